"""API types of ``image.toolkit.fluxcd.io/v1beta2`` and the Flux meta constants.

This package is the bottom layer: it imports nothing else from imagereflector. The CRD
YAML in ``manifests/crds`` is generated from these models.
"""
