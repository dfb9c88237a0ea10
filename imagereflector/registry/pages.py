"""Tag pages: the ``tags/list`` body, the ``Link`` header and page-size rejections.

Pure functions, no I/O, so the rules that decide how a scan walks pages are tested
without a registry.

Invariants:

* A next page is only ever on the host the scan started on; a ``Link`` that points
  elsewhere is refused (it would take the call's ``Authorization`` with it), and an
  absolute link with another scheme keeps the scan's scheme (no silent downgrade). A
  ``rel="next"`` target that does not parse, or names a metadata address, ends the scan
  with a message: pagination cannot be skipped silently, or the list would be partial.
* A tags body must be ``{"tags": [str, ...]}`` (``null`` or missing means no tags);
  anything else is an ``InvalidResponseError``, never a partial list. A body is parsed
  only when it cannot hold more strings than the scan may still take (or is small), so
  parsing never builds more objects than the whole-scan bound allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from imagereflector.registry.errors import (
    InvalidResponseError,
    PaginationError,
    ScanLimitError,
    decode_json,
    parse_error_body,
)
from imagereflector.registry.urls import display_url, resolve_target

PAGE_SIZE_CODES: Final = frozenset({"PAGINATION_NUMBER_INVALID", "TOO_MANY_TAGS_REQUESTED"})


@dataclass(frozen=True, slots=True)
class Link:
    """One link-value of a ``Link`` header: target and its ``rel`` types (lower case)."""

    target: str
    rels: frozenset[str]


def _split_outside(text: str, separator: str) -> list[str]:
    # Split on separator, but not inside <...> or "..." (URLs may contain commas).
    parts: list[str] = []
    current: list[str] = []
    in_angle = in_quote = False
    for char in text:
        if char == "<" and not in_quote:
            in_angle = True
        elif char == ">" and not in_quote:
            in_angle = False
        elif char == '"' and not in_angle:
            in_quote = not in_quote
        elif char == separator and not in_angle and not in_quote:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_link_header(values: Iterable[str]) -> tuple[Link, ...]:
    """Every link-value in the given ``Link`` header values (RFC 8288), in order."""
    links = []
    for value in values:
        for item in _split_outside(value, ","):
            item = item.strip()
            if not item.startswith("<") or ">" not in item:
                continue
            target, _, rest = item[1:].partition(">")
            rels: set[str] = set()
            for param in _split_outside(rest, ";"):
                name, _, raw = param.partition("=")
                if name.strip().lower() == "rel":
                    rels.update(raw.strip().strip('"').lower().split())
            links.append(Link(target=target.strip(), rels=frozenset(rels)))
    return tuple(links)


def next_page_url(
    request_url: str, link_values: Iterable[str], *, base: str, registry: str
) -> str | None:
    """The path and query of the next page, or ``None`` on the last page.

    Relative links resolve against ``request_url``. ``base`` is ``scheme://host`` of
    the scan; a link to another host raises ``PaginationError``, one that does not
    parse ``InvalidResponseError``.
    """
    for link in parse_link_header(link_values):
        if "next" not in link.rels or not link.target:
            continue
        target = resolve_target(request_url, link.target, registry=registry,
                                what=f"next-page Link (answer to GET {display_url(request_url)})")
        # Same host and port; a link without a port means the scan's own port, since
        # the scan keeps its scheme whatever scheme the link names.
        start, parts = urlsplit(base), urlsplit(target.url)
        start_port = start.port or (443 if start.scheme == "https" else 80)
        if (parts.hostname, parts.port or start_port) != (start.hostname, start_port):
            raise PaginationError(
                f"GET {request_url}: the Link header points to another host ({target.host}); "
                "not followed"
            )
        return urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return None


def parse_tags_page(
    body: bytes, *, what: str, max_strings: int | None = None, small_page: int = 0
) -> list[str]:
    """The tags of one ``tags/list`` page, in the registry's order.

    With ``max_strings``, a body larger than ``small_page`` bytes that holds more JSON
    strings than that is refused before it is parsed (``ScanLimitError``).
    """
    if max_strings is not None and len(body) > small_page:
        strings = body.count(b'"') // 2
        # Two strings are the keys "name" and "tags", one the name; a few spare.
        if strings > max_strings + 8:
            raise ScanLimitError(
                f"{what}: the page holds up to {strings} names, more than the "
                f"{max(0, max_strings)} tags the scan may still take; stopped "
                "(see --max-tags-per-scan)")
    document = decode_json(body, what=f"{what}: tags response")
    if not isinstance(document, dict):
        raise InvalidResponseError(f"{what}: tags response is not a JSON object")
    tags = document.get("tags")
    if tags is None:
        return []
    # JSON strings decode to exactly ``str``; checking the set of types runs in C.
    if not isinstance(tags, list) or not set(map(type, tags)) <= {str}:
        raise InvalidResponseError(f"{what}: tags response has no list of tag names")
    return tags


def rejects_page_size(status: int, body: bytes) -> bool:
    """Whether a first-page answer means "ask for fewer tags per page".

    Any 400 to the large first page counts (registries word it differently); other
    4xx only with one of the page-size error codes.
    """
    if status == 400:
        return True
    if not 400 <= status < 500:
        return False
    return any(detail.code in PAGE_SIZE_CODES for detail in parse_error_body(body))
