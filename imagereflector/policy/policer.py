"""The seam every tag-selection policy implements, and the explanation values.

A policer answers two questions about a list of tags:

* ``latest(tags)`` - the tag Flux v0.31 would select, or ``SelectionError``
  with Flux's message. This is the hot path and does no ranking.
* ``explain(tags)`` - an ``Evaluation``: the same choice plus every candidate
  ranked in policy order (best first) and every rejected tag with a short
  reason. It never raises ``SelectionError``; a failed selection is reported in
  ``Evaluation.error`` so a CLI can still show why.

Invariants: ``explain(tags).latest == latest(tags)`` whenever ``latest`` does
not raise, and then ``candidates[0].value`` is that tag; ``candidates`` and
``rejected`` together mention every distinct input tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from imagereflector.policy.errors import SelectionError


@dataclass(frozen=True, slots=True)
class Candidate:
    """A tag the policy could select.

    ``value`` is what the policy compared; ``tag`` is the original image tag.
    They differ only when ``filterTags.extract`` rewrote the tag.
    """

    tag: str
    value: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A tag the policy (or the tag filter) ruled out, with a short reason."""

    tag: str
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of applying a policy to a tag list, with its reasoning."""

    #: Human description of the policy, e.g. ``semver range '1.0.x'``.
    policy: str
    #: The selected original tag, or ``None`` when selection failed.
    latest: str | None
    #: Selectable tags, best first (``candidates[0]`` is the choice on success).
    candidates: tuple[Candidate, ...]
    #: Tags ruled out, in input order.
    rejected: tuple[Rejection, ...]
    #: Flux's selection error message when ``latest`` is ``None``.
    error: str | None = None

    def require_latest(self) -> str:
        """Return the selected tag, or raise ``SelectionError`` with Flux's message."""
        if self.latest is None:
            raise SelectionError(self.error or "no tag selected")
        return self.latest


class Policer(Protocol):
    """A tag-selection policy (semver range, alphabetical or numerical order)."""

    @property
    def description(self) -> str:
        """Human description used in ``Evaluation.policy``."""
        ...

    def latest(self, tags: Sequence[str]) -> str:
        """Return the selected tag; raise ``SelectionError`` if none can be chosen."""
        ...

    def explain(self, tags: Sequence[str]) -> Evaluation:
        """Return the selection with ranked candidates and reasoned rejections."""
        ...
