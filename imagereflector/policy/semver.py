"""Semver ranges with the grammar and semantics of Masterminds/semver, and the policy.

Flux hands ``spec.policy.semver.range`` to Masterminds ``NewConstraint``, so
every quirk of that library is user-visible and is reproduced here. Flux v0.31
used v3.2.1, Flux v1.2 uses v3.5; ``--flux-compatibility`` picks one
(``masterminds_3_5``). What v3.5 changed, all of it reproduced:

* the prerelease rule moved from each comparator to the AND group: if any
  comparator of a group carries a prerelease, every comparator of that group
  accepts prereleases (``>=1.0.0-0 <2.0.0`` selects ``1.5.0-rc.1``), and if none
  does, no comparator does (``!=1.2.3`` no longer accepts ``1.2.4-alpha``);
* errors quote the text Go's way (``improper constraint: "*-*"``) and the parser
  error is lower case (``constraint parser error``);
* a range is at most 512 bytes and 32 ``||`` groups, a version 256 characters;
* image tags are read with Flux v1.2's looser parser (``version.tag_sort_key_v1``).

The v3.2.1 rules, which v3.5 keeps except where listed above:

* Grammar. Hyphen ranges ``A - B`` are first rewritten to ``>= A, <= B `` by
  textual replacement; then the text is split on ``||`` (OR groups); each group
  must match the validation pattern (constraints separated by whitespace or a
  comma) or the error is ``improper constraint: <group>``; the constraints are
  then found left to right. Operators: ``=``/none, ``!=``, ``>``, ``<``,
  ``>=``/``=>``, ``<=``/``=<``, ``~``/``~>``, ``^``. A version is ``v``-prefixed
  or not, has one to three parts, any part may be ``x``/``X``/``*``.
  The segment character class admits ``|`` (an artefact of the original
  regular expression); such a version fails later with
  ``constraint Parser Error``, as does ``1x`` or an out-of-range number.
* Wildcards and partial versions make a comparator *dirty*: a wildcard major
  drops everything (``0.0.0``), a wildcard or missing minor gives
  ``M.0.0`` (minor dirty), a wildcard or missing patch gives ``M.m.0``
  (patch dirty). The prerelease is kept, build metadata is dropped.
* Prerelease rule (per comparator, as in v3.2.1; v3.4 moved it to the
  group): a version with a prerelease fails every comparator whose own
  version has none, so ``>=1.0.0`` never selects ``1.1.0-alpha`` while
  ``>=1.0.0-0`` can, and ``>=1.0.0-0 <2.0.0`` cannot. The library skips the
  rule for a ``!=`` without wildcards.
* Per-operator semantics follow the library exactly, including its edges
  (``^*`` only matches 0.0.0, ``<=*`` only 0.0.z, ``!=*`` excludes only
  0.0.0; see the tests).

The patterns are compiled with RE2 (linear time, Go's leftmost-first
semantics and ``\\s`` class), so the alternation order of the operators
matters and is kept as in the library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import re2

from imagereflector.policy.errors import (
    MSG_EMPTY_LIST,
    MSG_NO_LATEST,
    InvalidPolicyError,
    SelectionError,
)
from imagereflector.policy.policer import Candidate, Evaluation, Rejection
from imagereflector.policy.version import (
    MAX_VERSION_LEN,
    SortKey,
    Version,
    parse_tag,
    parse_version,
    tag_sort_key,
    tag_sort_key_v1,
)

__all__ = [
    "Comparator",
    "Constraints",
    "SemVerPolicy",
    "Version",
    "parse_constraints",
    "parse_tag",
    "parse_version",
    "rewrite_hyphen_ranges",
]

#: Message Masterminds gives when a constraint's version cannot be built.
MSG_CONSTRAINT_PARSER: Final = "constraint Parser Error"
#: The same in v3.5.
MSG_CONSTRAINT_PARSER_V35: Final = "constraint parser error"
#: Masterminds v3.5 ``MaxConstraintLen`` and ``MaxConstraintGroups``.
MAX_CONSTRAINT_LEN: Final = 512
MAX_CONSTRAINT_GROUPS: Final = 32

# Leftmost-first alternation: the order (with its empty operator second) decides
# which operator a token like ">=1" is read with, so it must not be "tidied".
_OPS: Final = "|".join(["=", "", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", r"\^"])
_SEG: Final = r"[0-9xX*|]+"
_IDENTS: Final = r"[0-9A-Za-z\-]+(?:\.[0-9A-Za-z\-]+)*"
_CV: Final = rf"v?{_SEG}(?:\.{_SEG})?(?:\.{_SEG})?(?:-{_IDENTS})?(?:\+{_IDENTS})?"
_CV_PARTS: Final = (
    rf"v?(?P<major>{_SEG})(?P<minor>\.{_SEG})?(?P<patch>\.{_SEG})?"
    rf"(?P<pre>-{_IDENTS})?(?:\+{_IDENTS})?"
)


def _re2(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


_RANGE_RE: Final = _re2(rf"\s*(?P<lo>{_CV})\s+-\s+(?P<hi>{_CV})\s*")
_GROUP_RE: Final = _re2(rf"^(?:\s*(?:{_OPS})\s*{_CV}\s*)(?:(?:\s+|,\s*)(?:{_OPS})\s*{_CV}\s*)*$")
_FIND_RE: Final = _re2(rf"(?:{_OPS})\s*{_CV}")
_ONE_RE: Final = _re2(rf"^\s*(?P<op>{_OPS})\s*(?P<cv>{_CV_PARTS})\s*$")

_WILDCARDS: Final = frozenset({"x", "X", "*"})


#: A test of one version's sort key against one comparator.
KeyTest = Callable[[SortKey], bool]


def _compile_test(
    op: str, con: SortKey, dirty: bool, minor_dirty: bool, patch_dirty: bool,
    *, per_comparator_prerelease: bool = True,
) -> KeyTest:
    """Build the operator's test as a closure over the comparator's base version.

    With ``per_comparator_prerelease`` (v3.2.1) the comparator rejects prereleases
    itself; without it (v3.5) the group decides (``Constraints.check_key``).

    Versions are handled as sort keys ``(major, minor, patch, release, pre)``
    so that ordering is plain tuple comparison; ``v < con`` is Masterminds'
    ``v.LessThan(con)``.
    """
    c_major, c_minor, c_patch, _, c_pre = con

    def tilde(v: SortKey) -> bool:
        if v < con:
            return False
        if (c_major, c_minor, c_patch) == (0, 0, 0) and not (minor_dirty or patch_dirty):
            # ~0.0.0 and ~* accept everything at or above the base.
            return True
        return v[0] == c_major and (minor_dirty or v[1] == c_minor)

    def not_equal(v: SortKey) -> bool:
        if dirty:
            if v[0] != c_major:
                return True
            if minor_dirty:
                return False
            if v[1] != c_minor:
                return True
            if patch_dirty:
                # Same M.m: only a different prerelease makes it unequal.
                return v[4] != c_pre
            if v[2] != c_patch:
                return True
        return v != con

    def greater(v: SortKey) -> bool:
        if dirty:
            if v[0] != c_major:
                return v[0] > c_major
            if minor_dirty:
                return False
            if patch_dirty:
                return v[1] > c_minor
        return v > con

    def less_equal(v: SortKey) -> bool:
        if not dirty:
            return v <= con
        if v[0] > c_major:
            return False
        return not (v[0] == c_major and v[1] > c_minor and not minor_dirty)

    def caret(v: SortKey) -> bool:
        if v < con:
            return False
        if c_major > 0 or minor_dirty:
            return v[0] == c_major
        if v[0] > 0:
            return False
        if c_minor > 0 or patch_dirty:
            return v[1] == c_minor
        if v[1] > 0:
            return False
        return v[2] == c_patch

    test: KeyTest
    if op in ("", "="):
        test = tilde if dirty else con.__eq__
    elif op == "!=":
        test = not_equal
    elif op == ">":
        test = greater
    elif op == "<":
        test = con.__gt__
    elif op in (">=", "=>"):
        test = con.__le__
    elif op in ("<=", "=<"):
        test = less_equal
    elif op in ("~", "~>"):
        test = tilde
    else:
        test = caret
    if not per_comparator_prerelease or not _rejects_prereleases(op, con, dirty):
        return test
    inner = test

    def release_only(v: SortKey) -> bool:
        return v[3] == 1 and inner(v)

    return release_only


def _rejects_prereleases(op: str, con: SortKey, dirty: bool) -> bool:
    """Masterminds issue 21: a comparator without a prerelease rejects prereleases.

    v3.2.1 forgot the rule in the non-wildcard ``!=`` branch, so ``!=1.2.3``
    accepts ``1.2.4-alpha``.
    """
    if con[3] == 0:
        return False
    return op != "!=" or dirty


@dataclass(frozen=True, slots=True)
class Comparator:
    """One operator applied to one (possibly partial or wildcard) version."""

    op: str
    #: The version text as written in the range (with ``v`` and wildcards).
    text: str
    version: Version
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool
    #: Masterminds v3.5: the prerelease rule belongs to the group, not to this comparator.
    group_prerelease: bool = False
    test: KeyTest = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        test = _compile_test(
            self.op, self.version.sort_key, self.dirty, self.minor_dirty, self.patch_dirty,
            per_comparator_prerelease=not self.group_prerelease,
        )
        object.__setattr__(self, "test", test)

    def allows(self, v: Version) -> bool:
        """Apply the operator, ignoring the group-level prerelease rule."""
        return self.test(v.sort_key)


@dataclass(frozen=True, slots=True)
class Constraints:
    """A parsed range: OR of AND-groups of comparators."""

    text: str
    groups: tuple[tuple[Comparator, ...], ...]
    #: Masterminds v3.5: a group with a prerelease comparator accepts prereleases,
    #: a group without one accepts none.
    group_prerelease: bool = False
    _compiled: tuple[tuple[KeyTest, ...], ...] = field(init=False, repr=False, compare=False)
    _rejects_pre: tuple[bool, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = tuple(tuple(c.test for c in group) for group in self.groups)
        object.__setattr__(self, "_compiled", compiled)
        rejects = tuple(self.group_prerelease and not any(c.version.prerelease for c in group)
                        for group in self.groups)
        object.__setattr__(self, "_rejects_pre", rejects)

    def check(self, v: Version) -> bool:
        """Report whether ``v`` satisfies the range (Masterminds ``Check``)."""
        return self.check_key(v.sort_key)

    def check_key(self, key: SortKey) -> bool:
        """``check`` on a version's sort key (see ``version.tag_sort_key``)."""
        for tests, rejects_pre in zip(self._compiled, self._rejects_pre, strict=True):
            if rejects_pre and key[3] == 0:
                continue
            for test in tests:
                if not test(key):
                    break
            else:
                return True
        return False

    def excludes_prereleases(self) -> bool:
        """True if every OR group has a comparator that rejects all prereleases."""
        if self.group_prerelease:
            return all(self._rejects_pre)
        return all(
            any(_rejects_prereleases(c.op, c.version.sort_key, c.dirty) for c in group)
            for group in self.groups
        )


def rewrite_hyphen_ranges(text: str) -> str:
    """Rewrite every ``A - B`` into ``>= A, <= B `` (trailing space included)."""
    out = text
    # Each match is replaced at its *first occurrence* in the partly rewritten
    # text, not at its own offset: that is what the library does.
    for m in _RANGE_RE.finditer(text):
        out = out.replace(m.group(0), f">= {m.group('lo')}, <= {m.group('hi')} ", 1)
    return out


def _parse_comparator(token: str, *, masterminds_3_5: bool = False) -> Comparator:
    m = _ONE_RE.search(token)
    if m is None:
        shown = go_quote(token) if masterminds_3_5 else token
        raise InvalidPolicyError(f"improper constraint: {shown}")
    op, cv = m.group("op"), m.group("cv")
    major, minor, patch = m.group("major"), m.group("minor") or "", m.group("patch") or ""
    pre = m.group("pre") or ""
    dirty = minor_dirty = patch_dirty = False
    if major in _WILDCARDS:
        dirty = True
        base = f"0.0.0{pre}"
    elif not minor or minor[1:] in _WILDCARDS:
        dirty = minor_dirty = True
        base = f"{major}.0.0{pre}"
    elif not patch or patch[1:] in _WILDCARDS:
        dirty = patch_dirty = True
        base = f"{major}{minor}.0{pre}"
    else:
        base = cv
    try:
        version = parse_version(base, max_length=MAX_VERSION_LEN if masterminds_3_5 else None)
    except ValueError:
        raise InvalidPolicyError(
            MSG_CONSTRAINT_PARSER_V35 if masterminds_3_5 else MSG_CONSTRAINT_PARSER) from None
    return Comparator(op, cv, version, dirty, minor_dirty, patch_dirty,
                      group_prerelease=masterminds_3_5)


def parse_constraints(text: str, *, masterminds_3_5: bool = False) -> Constraints:
    """Parse a range like Masterminds ``NewConstraint`` (v3.2.1, or v3.5 with
    ``masterminds_3_5``); raise ``InvalidPolicyError``."""
    if masterminds_3_5 and len(text.encode("utf-8", "surrogatepass")) > MAX_CONSTRAINT_LEN:
        raise InvalidPolicyError(
            f"constraint string is too long (max {MAX_CONSTRAINT_LEN} bytes)")
    parts = rewrite_hyphen_ranges(text).split("||")
    if masterminds_3_5 and len(parts) > MAX_CONSTRAINT_GROUPS:
        raise InvalidPolicyError(f"too many constraint groups (max {MAX_CONSTRAINT_GROUPS})")
    groups: list[tuple[Comparator, ...]] = []
    for part in parts:
        if _GROUP_RE.search(part) is None:
            shown = go_quote(part) if masterminds_3_5 else part
            raise InvalidPolicyError(f"improper constraint: {shown}")
        group = tuple(_parse_comparator(m.group(0), masterminds_3_5=masterminds_3_5)
                      for m in _FIND_RE.finditer(part))
        groups.append(group)
    return Constraints(text, tuple(groups), group_prerelease=masterminds_3_5)


_GO_ESCAPES: Final = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                      "\r": "\\r", "\t": "\\t", "\v": "\\v",
                      "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """``text`` as Go's ``%q`` (``strconv.Quote``) prints it: double quotes, ``\\`` and
    ``\\"`` escaped, the C escapes, other unprintable characters as ``\\xNN``,
    ``\\uNNNN`` or ``\\UNNNNNNNN``, printable Unicode kept (a lone surrogate is
    ``U+FFFD``, which is what Go's JSON decoder made of it)."""
    out = ['"']
    for char in text:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif "\ud800" <= char <= "\udfff":
            out.append("\ufffd")
        elif char == " " or (char.isprintable() and not char.isspace()):
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


class SemVerPolicy:
    """Select the highest strict-semver tag inside a Masterminds range (Flux ``SemVer``)."""

    __slots__ = ("_constraints", "_tag_key", "range")

    def __init__(self, range_: str, *, masterminds_3_5: bool = False) -> None:
        """Parse ``range_``; raise ``InvalidPolicyError`` if it is not a valid range.

        ``masterminds_3_5``: Flux v1.2's semantics (ranges of Masterminds v3.5, tags
        read by ``tag_sort_key_v1``) instead of Flux v0.31's."""
        self.range: Final = range_
        self._constraints = parse_constraints(range_, masterminds_3_5=masterminds_3_5)
        self._tag_key = tag_sort_key_v1 if masterminds_3_5 else tag_sort_key

    @property
    def description(self) -> str:
        """Human description, e.g. ``semver range '1.0.x'``."""
        return f"semver range '{self.range}'"

    @property
    def constraints(self) -> Constraints:
        """The parsed range."""
        return self._constraints

    def latest(self, tags: Sequence[str]) -> str:
        """Return the highest satisfying tag as written; ties keep the first seen."""
        if not tags:
            raise SelectionError(MSG_EMPTY_LIST)
        check = self._constraints.check_key
        tag_key = self._tag_key
        best: SortKey | None = None
        best_tag = ""
        for tag in tags:
            key = tag_key(tag)
            if key is not None and check(key) and (best is None or key > best):
                best, best_tag = key, tag
        if best is None:
            raise SelectionError(MSG_NO_LATEST)
        return best_tag

    def explain(self, tags: Sequence[str]) -> Evaluation:
        """Rank every satisfying tag (highest first) and say why the others were skipped."""
        chosen: list[tuple[SortKey, str]] = []
        rejected: list[Rejection] = []
        check = self._constraints.check_key
        excluded_pre = f"prerelease excluded by range '{self.range}'"
        outside = f"outside range '{self.range}'"
        pre_never_ok = self._constraints.excludes_prereleases()
        for tag in tags:
            key = self._tag_key(tag)
            if key is None:
                rejected.append(Rejection(tag, tag, "not a strict semver version"))
            elif check(key):
                chosen.append((key, tag))
            elif key[3] == 0 and pre_never_ok:
                rejected.append(Rejection(tag, tag, excluded_pre))
            else:
                rejected.append(Rejection(tag, tag, outside))
        # sorted() is stable with reverse=True, so equal versions keep input
        # order and the first one seen ranks first, as in latest().
        chosen.sort(key=lambda item: item[0], reverse=True)
        candidates = tuple(Candidate(tag, tag) for _, tag in chosen)
        error = None
        if not tags:
            error = MSG_EMPTY_LIST
        elif not candidates:
            error = MSG_NO_LATEST
        latest = candidates[0].tag if candidates else None
        return Evaluation(self.description, latest, candidates, tuple(rejected), error)
