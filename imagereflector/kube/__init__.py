"""The Kubernetes runtime: client, informers, workqueue, conditions, patching, events.

This is the only package that imports ``kubernetes_asyncio``; everything above it talks to
Kubernetes through the small typed surface it exports.
"""
