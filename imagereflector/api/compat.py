"""The one switch between the two Flux releases this controller can stand in for.

Flux 2.2 (image-reflector-controller v0.31) and today's Flux (v1.2) disagree on some
observable details: message texts, the revision format, how a policy reports a repository
that has no tags, how a secret of the wrong type is treated. Everything the newer release
added that the older one simply lacks is on in both modes; only where the two conflict does
``--flux-compatibility`` decide:

* ``v0.31`` (the default): what Flux 2.2 shows, which this project was built to match;
* ``v1.2``: what the newest Flux controller shows.

``docs/operations.md`` lists every difference the switch makes.
"""

from __future__ import annotations

from enum import StrEnum


class Compatibility(StrEnum):
    """Which Flux release's behaviour wins where the releases conflict."""

    V0_31 = "v0.31"
    V1_2 = "v1.2"

    @classmethod
    def parse(cls, text: str) -> Compatibility:
        """The mode named by ``text``; ``ValueError`` naming the choices otherwise."""
        try:
            return cls(text)
        except ValueError:
            choices = ", ".join(mode.value for mode in cls)
            raise ValueError(f"invalid --flux-compatibility {text!r}: use one of {choices}"
                             ) from None

    @property
    def latest(self) -> bool:
        """Whether the newest release's behaviour applies."""
        return self is Compatibility.V1_2
