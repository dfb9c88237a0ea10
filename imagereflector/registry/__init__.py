"""The OCI distribution API client: references, auth challenge, tag listing, politeness.

Nothing here knows about Kubernetes: the package takes a parsed reference and credentials
and returns tags, so ``imagereflector scan`` and the controller share one code path.
"""
