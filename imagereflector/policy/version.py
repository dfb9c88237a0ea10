"""Semantic versions as Masterminds/semver parses and orders them (v3.2.1 and v3.5).

The parsers, because Flux uses several:

* ``parse_tag`` - what Flux v0.31's ``version.ParseVersion`` (fluxcd/pkg version
  v0.2.2 on Masterminds v3.2.1) accepts for an image tag: one optional leading
  ``v``, then a *strict* ``MAJOR.MINOR.PATCH`` with no leading zeros, an optional
  ``-prerelease`` (dot-separated non-empty ``[0-9A-Za-z-]`` identifiers, numeric
  ones without leading zeros) and an optional ``+build``. Anything else is not a
  candidate (returns ``None``).
* ``tag_sort_key_v1`` - what Flux v1.2's ``version.ParseVersion`` (fluxcd/pkg
  version v0.16 on Masterminds v3.5) accepts: the tag must split into exactly
  three parts at its first two dots, then Masterminds' coercing ``NewVersion``
  reads it: leading zeros are fine (``2025.02.03`` is 2025.2.3), a part may be
  missing when the prerelease holds the dots (``1.2-rc.1.0`` is 1.2.0-rc.1.0),
  numeric prerelease identifiers still may not start with 0, and a tag is at
  most 256 characters.
* ``parse_version`` - Masterminds ``NewVersion``, the lenient parser used for
  the versions written inside a range: ``1`` and ``1.2`` are padded with zeros
  and leading zeros in the numeric parts are tolerated (v3.5 adds the limit of
  256 characters, ``max_length``).

Ordering (``Version.compare``): major, minor, patch numerically; a release
beats any prerelease of the same triple; prerelease identifiers compared left
to right, numeric (fits in uint64) below alphanumeric, numbers numerically,
strings by byte order, a missing identifier sorts lower; build metadata is
ignored. ``sort_key`` encodes exactly this order as a tuple, so sorting and
``max`` need no comparator.

Parsing uses anchored, linear regular expressions (no nested ambiguous
repetition), so hostile tags cannot cause backtracking blow-ups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

# Go's strconv.ParseUint(s, 10, 64) rejects anything above this.
_UINT64_MAX: Final = (1 << 64) - 1

_IDENTS: Final = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"

_STRICT_RE: Final = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    rf"(?:-({_IDENTS}))?(?:\+({_IDENTS}))?"
)

_LOOSE_RE: Final = re.compile(
    rf"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:-({_IDENTS}))?(?:\+({_IDENTS}))?"
)

#: One prerelease identifier in sort-key form: ``(0, n)`` numeric, ``(1, s)`` text.
PreIdent = tuple[int, int | str]
#: Total order of a version; see the module docstring.
SortKey = tuple[int, int, int, int, tuple[PreIdent, ...]]


@dataclass(frozen=True, slots=True)
class Version:
    """A parsed semantic version; ``original`` is the text it was parsed from."""

    major: int
    minor: int
    patch: int
    prerelease: str
    build: str
    original: str
    sort_key: SortKey = field(compare=False, repr=False)

    def compare(self, other: Version) -> int:
        """Return -1, 0 or 1 as ``self`` orders before, equal to or after ``other``."""
        a, b = self.sort_key, other.sort_key
        return (a > b) - (a < b)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += f"-{self.prerelease}"
        if self.build:
            text += f"+{self.build}"
        return text


def _pre_ident(ident: str) -> PreIdent:
    # Masterminds treats an identifier as a number only if ParseUint accepts it,
    # so an all-digit identifier beyond uint64 compares as text.
    if ident.isdigit() and ident.isascii():
        value = int(ident)
        if value <= _UINT64_MAX:
            return (0, value)
    return (1, ident)


def _sort_key(major: int, minor: int, patch: int, prerelease: str) -> SortKey:
    if not prerelease:
        return (major, minor, patch, 1, ())
    return (major, minor, patch, 0, tuple(_pre_ident(p) for p in prerelease.split(".")))


def _has_zero_padded_number(prerelease: str) -> bool:
    return any(len(p) > 1 and p[0] == "0" and p.isdigit() for p in prerelease.split("."))


def _make(
    major: int, minor: int, patch: int, prerelease: str, build: str, original: str
) -> Version:
    return Version(
        major,
        minor,
        patch,
        prerelease,
        build,
        original,
        _sort_key(major, minor, patch, prerelease),
    )


def tag_sort_key(tag: str) -> SortKey | None:
    """Return the sort key of ``tag`` if ``parse_tag`` would accept it, else None.

    The hot path of the semver policy: it avoids building a ``Version`` for
    every tag of a large repository.
    """
    m = _STRICT_RE.fullmatch(tag[1:] if tag.startswith("v") else tag)
    if m is None:
        return None
    a, b, c, prerelease, _build = m.groups()
    # Only a number of 20+ digits can exceed uint64.
    if (len(a) > 19 or len(b) > 19 or len(c) > 19) and max(int(a), int(b), int(c)) > _UINT64_MAX:
        return None
    if prerelease is None:
        return (int(a), int(b), int(c), 1, ())
    if _has_zero_padded_number(prerelease):
        return None
    return (int(a), int(b), int(c), 0, tuple(_pre_ident(p) for p in prerelease.split(".")))


#: Masterminds v3.5 ``MaxVersionLen``.
MAX_VERSION_LEN: Final = 256


def tag_sort_key_v1(tag: str) -> SortKey | None:
    """The sort key of ``tag`` if Flux v1.2's ``version.ParseVersion`` accepts it."""
    if len(tag) > MAX_VERSION_LEN or tag.count(".") < 2:
        return None
    m = _LOOSE_RE.fullmatch(tag)
    if m is None:
        return None
    major = int(m[1])
    minor = int(m[2]) if m[2] is not None else 0
    patch = int(m[3]) if m[3] is not None else 0
    if max(major, minor, patch) > _UINT64_MAX:
        return None
    prerelease = m[4] or ""
    if prerelease and _has_zero_padded_number(prerelease):
        return None
    return _sort_key(major, minor, patch, prerelease)


def parse_tag(tag: str) -> Version | None:
    """Parse an image tag the way Flux's ``version.ParseVersion`` does, or return None.

    ``original`` keeps the tag as given (including a leading ``v``), which is
    what the semver policy returns.
    """
    key = tag_sort_key(tag)
    if key is None:
        return None
    text = tag[1:] if tag.startswith("v") else tag
    rest, _, build = text.partition("+")
    _, _, prerelease = rest.partition("-")
    return Version(key[0], key[1], key[2], prerelease, build, tag, key)


def parse_version(text: str, *, max_length: int | None = None) -> Version:
    """Parse leniently like Masterminds ``NewVersion``; raise ``ValueError`` if invalid.

    Accepts an optional ``v``, one to three numeric parts (missing ones are 0,
    leading zeros allowed), then optional prerelease and build metadata; with
    ``max_length`` (v3.5) nothing longer.
    """
    if max_length is not None and len(text.encode("utf-8", "surrogatepass")) > max_length:
        raise ValueError(f"version string is too long (max {max_length} bytes)")
    m = _LOOSE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"invalid semantic version: {text!r}")
    major = int(m[1])
    minor = int(m[2]) if m[2] is not None else 0
    patch = int(m[3]) if m[3] is not None else 0
    if major > _UINT64_MAX or minor > _UINT64_MAX or patch > _UINT64_MAX:
        raise ValueError(f"version segment out of range: {text!r}")
    prerelease = m[4] or ""
    if prerelease and _has_zero_padded_number(prerelease):
        raise ValueError(f"version segment starts with 0: {text!r}")
    return _make(major, minor, patch, prerelease, m[5] or "", text)
