"""The tag store: scanned tags kept per ImageRepository, behind the ``TagStore`` protocol."""

from imagereflector.store.base import ObjectKey, StoredScan, StoreError, TagStore
from imagereflector.store.sqlite import DB_FILENAME, SCHEMA_VERSION, SqliteTagStore

__all__ = [
    "DB_FILENAME",
    "SCHEMA_VERSION",
    "ObjectKey",
    "SqliteTagStore",
    "StoreError",
    "StoredScan",
    "TagStore",
]
