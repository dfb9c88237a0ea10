"""The composition root: builds the real components and runs them.

``app`` is the only layer that knows every concrete class (SQLite store, aiohttp registry
client, kube runtime); everything below it talks to protocols.
"""
