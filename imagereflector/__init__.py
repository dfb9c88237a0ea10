"""imagereflector: a Flux-compatible image reflector controller written for asyncio.

The package implements the ``image.toolkit.fluxcd.io/v1beta2`` ImageRepository and
ImagePolicy APIs. Sub-packages are layered (see ``docs/architecture.md``); the layering
is enforced by import-linter in ``make lint``.
"""

__version__ = "0.1.0"
