"""Pure helpers of the scan: tag exclusion, the latest-tags summary, the list revision.

Exclusion patterns are Go regular expressions (``spec.exclusionList``), so they are
compiled with RE2 (``google-re2``), which shares Go's syntax and linear-time matching: a
pattern such as ``(a+)+$`` cannot make a scan hang. The semantics match Go's ``regexp``:

* a pattern matches a tag when it matches anywhere in it (unanchored search);
* ``$`` matches only at the very end of the tag (no multi-line mode unless ``(?m)``),
  never before a trailing newline as Python's ``re`` would;
* ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII-only;
* Python-only syntax such as ``\\Z`` is a compile error, as it is in Go, and so is RE2's
  ``\\C``, which Go lacks.

Tags are handed to RE2 as UTF-8 bytes (lone surrogates passed through), so no tag text can
make filtering raise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import re2

DEFAULT_EXCLUSION_LIST: Final = ("^.*\\.sig$",)
LATEST_TAGS_COUNT: Final = 10


class ExclusionError(ValueError):
    """An exclusion pattern does not compile: ``failed to compile regex <pattern>: <why>``."""


def _options() -> Any:
    options = re2.Options()
    # RE2 logs every compile failure to stderr; the error is reported through the status.
    options.log_errors = False
    return options


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Compiled exclusion patterns; ``apply`` keeps the tags that none of them matches."""

    patterns: tuple[str, ...]
    _compiled: tuple[Any, ...] = field(repr=False, compare=False)

    def excludes(self, tag: str) -> bool:
        """True when any pattern matches anywhere in ``tag``."""
        data = _utf8(tag)
        return any(regexp.search(data) is not None for regexp in self._compiled)

    def apply(self, tags: Iterable[str]) -> list[str]:
        """The tags no pattern matches, in their original order (duplicates kept)."""
        return [tag for tag in tags if not self.excludes(tag)]


def _go_rejects(pattern: str) -> str | None:
    """The error Go reports for syntax RE2 accepts but Go does not, else None.

    RE2's ``\\C`` (any single byte) has no Go equivalent; an escape inside ``\\Q...\\E``
    is literal text and does not count.
    """
    i, quoted = 0, False
    while i < len(pattern) - 1:
        pair = pattern[i : i + 2]
        if quoted:
            # Go ends the quote at the first \E, whatever precedes it.
            quoted = pair != "\\E"
            i += 1 if quoted else 2
        elif pair == "\\Q":
            quoted, i = True, i + 2
        elif pair == "\\C":
            return "invalid escape sequence: \\C"
        else:
            i += 2 if pair[0] == "\\" else 1
    return None


def compile_exclusions(patterns: Sequence[str]) -> TagFilter:
    """Compile every pattern, failing on the first invalid one (contract §2.8.3)."""
    compiled = []
    options = _options()
    for pattern in patterns:
        rejected = _go_rejects(pattern)
        if rejected is not None:
            raise ExclusionError(f"failed to compile regex {pattern}: {rejected}")
        try:
            # Bytes in, bytes searched: RE2 never sees a str it would have to encode itself.
            compiled.append(re2.compile(_utf8(pattern), options))
        except re2.error as err:
            raise ExclusionError(
                f"failed to compile regex {pattern}: {_error_text(err)}"
            ) from None
    return TagFilter(patterns=tuple(patterns), _compiled=tuple(compiled))


def _error_text(err: Exception) -> str:
    detail = err.args[0] if err.args else ""
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    return str(detail)


def latest_tags(tags: Sequence[str], n: int = LATEST_TAGS_COUNT) -> list[str]:
    """The first ``n`` tags in descending byte-wise order (``status.lastScanResult.latestTags``).

    Tags compare as their UTF-8 bytes, as Go compares strings, not by version; the sort is
    stable. An empty input or ``n <= 0`` gives an empty list.
    """
    if n <= 0:
        return []
    return sorted(tags, key=_utf8, reverse=True)[:n]


def tags_revision(tags: Iterable[str]) -> str:
    """The checksum of a stored tag list (``status.lastScanResult.revision``, contract A2).

    Definition: ``"sha256:"`` followed by the lower-case hex SHA-256 of the distinct tags,
    each encoded as UTF-8, sorted by those bytes ascending and joined with ``b"\\n"`` (no
    trailing newline). It therefore depends on the set of tags only, not on the order the
    registry listed them in nor on repeats; the empty list gives the digest of ``b""``.
    """
    encoded = sorted({_utf8(tag) for tag in tags})
    return "sha256:" + hashlib.sha256(b"\n".join(encoded)).hexdigest()


def exclusion_lists_equal(effective: Sequence[str], observed: Sequence[str]) -> bool:
    """Whether the exclusion list changed since the last scan, as v0.31 decides (§2.7.4).

    Equal when the lengths match and every effective pattern occurs somewhere in the
    observed list: order does not matter and repeats are not counted exactly, so an
    effective ``[a, a]`` counts as equal to an observed ``[a, b]`` (not the other way round).
    """
    return len(effective) == len(observed) and all(p in observed for p in effective)
