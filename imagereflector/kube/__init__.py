"""The Kubernetes runtime: client, informers, workqueue, conditions, patching, events.

This is the only package that imports ``kubernetes_asyncio``; everything above it talks to
Kubernetes through the small typed surface it exports. Importing the package first
installs lazy stand-ins for kubernetes_asyncio's generated classes (see ``_lean``).
"""

from imagereflector.kube import _lean

_lean.install()
