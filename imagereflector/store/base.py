"""The tag store seam: the ``TagStore`` protocol and the values it speaks in.

Tags are kept per ImageRepository (``ObjectKey``: namespace and name), never per
canonical image, so two repositories that scan the same image with different
credentials or exclusion lists cannot overwrite each other (contract A1).

Invariants every implementation keeps:

* ``set_tags`` replaces an object's whole tag list and its scan metadata at once: a
  reader sees the old list or the new one, never a mix, and never a list whose
  ``StoredScan`` belongs to another write.
* Reading an unknown object is not an error: ``tags`` gives ``[]``, ``scan`` ``None``.
* Tags come back in the order they were stored (the registry's order).
* Failures of the backing storage surface as ``StoreError`` with a short message;
  nothing else escapes, so callers classify by type.
* The store is a rebuildable cache: losing it costs one rescan per object.
  ``check`` lets the owner notice a deleted or corrupt backing file and start again
  from empty instead of failing forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["ObjectKey", "StoreError", "StoredScan", "TagStore"]


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """The identity of one namespaced Kubernetes object; ``str()`` gives ``namespace/name``."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> ObjectKey:
        """Parse ``namespace/name`` (the form ``str()`` produces).

        Raises ``ValueError`` when there is not exactly one ``/`` or a part is empty.
        """
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"object key {text!r} is not of the form namespace/name")
        return cls(namespace=namespace, name=name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class StoredScan:
    """The metadata of an object's last stored scan, readable without loading its tags.

    ``revision`` is whatever the writer passed (the controller's checksum of the tag
    list, contract A2); ``scan_time`` is returned exactly as it was given.
    """

    canonical_image: str
    revision: str
    scan_time: datetime
    tag_count: int


class StoreError(Exception):
    """The backing storage failed; the message names the operation and the object."""


@runtime_checkable
class TagStore(Protocol):
    """Scanned tags per ImageRepository, with the metadata of the scan that produced them."""

    @property
    def is_open(self) -> bool:
        """True while the store can serve reads and writes (``/readyz`` reports it)."""
        ...

    async def set_tags(
        self,
        key: ObjectKey,
        *,
        canonical_image: str,
        tags: Sequence[str],
        revision: str,
        scan_time: datetime,
    ) -> None:
        """Replace the object's tags and scan metadata in one atomic step."""
        ...

    async def tags(self, key: ObjectKey) -> list[str]:
        """The object's tags in stored order; ``[]`` for an unknown object."""
        ...

    async def scan(self, key: ObjectKey) -> StoredScan | None:
        """The object's last stored scan without its tags; ``None`` for an unknown object."""
        ...

    async def delete(self, key: ObjectKey) -> None:
        """Forget the object; deleting an unknown object is not an error."""
        ...

    async def keys(self) -> list[ObjectKey]:
        """Every object that has stored tags, sorted by namespace then name."""
        ...

    async def check(self, *, quick_check: bool = False) -> bool:
        """Verify the backing storage and recreate it empty when it is gone or corrupt.

        With ``quick_check`` the contents are verified too, not only that the backing
        file is still there. Returns True when the store had to start again from
        empty, so the caller can log it once and rescan.
        """
        ...

    async def close(self) -> None:
        """Release the backing storage; closing twice is fine."""
        ...
