"""What must differ between peers and runs, taken out before observations are compared.

Two peers observed in one run differ in their namespaces; two runs (Flux's recorded
outcome and ours today) differ in ports, digests and times. Normalisation maps each to a
stable name and leaves everything a user could tell apart:

* namespaces ``<scenario>-<placeholder>-<peer>`` become ``{placeholder}``;
* ``127.0.0.1:PORT`` of a world host becomes ``<role>`` (``<plain>``, ``<basic>``...);
* ``sha256:<64 hex>`` becomes ``sha256:<digest>``, except in a revision (``revision``,
  ``with checksum ...``): that is a checksum of tag names and the same in every run;
* times (``lastTransitionTime``, ``scanTime``) become ``<time>``, and the durations
  after ``next scan in`` become ``<duration>`` (they count down while the run goes on);
* condition lists are sorted by type (both peers keep Flux's order; sorting makes a
  reordering one difference, not many);
* a Warning event's repeat count is dropped (it shows as ``recorded``): backoff decides
  how often a failure repeats before an observation, not the controller's logic. Normal
  events keep their exact count;
* runs of whitespace in text become one space (ours are one line by design; Flux keeps
  the trailing newline of a registry's answer);
* ``kubectl get`` cells are cut at the header's columns before names are rewritten.

Invariant: normalisation is a pure function of the observation and the ``Names`` of the
instance; it never drops a field, it only rewrites values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

JSON = dict[str, Any]
# Manifest digests differ from run to run (the registry content is made anew); a revision
# is a checksum of tag names, the same in every run, so it is compared as it is.
_DIGEST: Final = re.compile(r"(?<!checksum )sha256:[0-9a-f]{64}")
_KEEP: Final = frozenset({"revision"})
_NEXT_SCAN: Final = re.compile(r"(next scan in )[0-9.hmsuµn]+")
_TIME_FIELDS: Final = frozenset({"lastTransitionTime", "scanTime"})


@dataclass(frozen=True, slots=True)
class Names:
    """Real names of one instance and the stable names they become."""

    namespaces: Mapping[str, str]  # real namespace -> "{placeholder}"
    hosts: Mapping[str, str]  # "127.0.0.1:PORT" -> role

    def text(self, value: str) -> str:
        """One string with every real name replaced."""
        for real, stable in sorted(self.namespaces.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(real, stable)
        for host, role in sorted(self.hosts.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(host, f"<{role}>")
        value = _DIGEST.sub("sha256:<digest>", value)
        value = _NEXT_SCAN.sub(r"\1<duration>", value)
        # Ours are one line by design (docs/security.md); Flux keeps a registry body's
        # trailing newline. Runs of whitespace say nothing either way.
        return " ".join(value.split())


def value(raw: Any, names: Names, *, key: str = "") -> Any:
    """A JSON value with names, digests and times made stable, recursively."""
    if isinstance(raw, dict):
        return {k: value(v, names, key=k) for k, v in raw.items()}
    if isinstance(raw, list):
        return [value(item, names, key=key) for item in raw]
    if isinstance(raw, str):
        if key in _TIME_FIELDS:
            return "<time>"
        if key in _KEEP:
            return raw
        return names.text(raw)
    return raw


def status(raw: JSON | None, names: Names) -> JSON:
    """The normalised ``status`` of an object (conditions sorted by type)."""
    result: JSON = value(raw or {}, names)
    conditions = result.get("conditions")
    if isinstance(conditions, list):
        result["conditions"] = sorted(conditions, key=lambda c: str(c.get("type")))
    return result


def event(raw: JSON, names: Names) -> JSON:
    """The comparable part of one Event: type, reason, message and count."""
    count = int(raw.get("count") or 1)
    kind = str(raw.get("type", ""))
    shown: int | str = count if kind != "Warning" else "recorded"
    return {"type": kind, "reason": str(raw.get("reason", "")),
            "message": names.text(str(raw.get("message", ""))), "count": shown}


def table(text: str, names: Names) -> dict[str, dict[str, str]]:
    """``kubectl get`` output as ``{name: {column: cell}}``, cells normalised.

    kubectl prints one table per kind, each with its own header; columns are cut at the
    header's word positions before any name is rewritten (rewriting changes widths).
    """
    rows: dict[str, dict[str, str]] = {}
    starts: list[int] = []
    titles: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            starts = []
            continue
        if not starts:
            starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", line)]
            titles = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None],
                                                         strict=True)]
            continue
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        row = {}
        for title, cell in zip(titles, cells, strict=True):
            if title == "AGE" and cell:
                cell = "<age>"
            elif title in ("LAST SCAN",) and cell:
                cell = "<time>"
            row[title] = names.text(cell)
        if cells:
            rows[names.text(cells[0])] = row
    return rows
