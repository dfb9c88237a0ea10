"""Tag pages: the ``tags/list`` body, the ``Link`` header and page-size rejections.

Pure functions, no I/O, so the rules that decide how a scan walks pages are tested
without a registry.

Invariants:

* A next page is only ever on the host the scan started on; a ``Link`` that points
  elsewhere is refused (it would take the call's ``Authorization`` with it), and an
  absolute link with another scheme keeps the scan's scheme (no silent downgrade).
* A tags body must be ``{"tags": [str, ...]}`` (``null`` or missing means no tags);
  anything else is an ``InvalidResponseError``, never a partial list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

from imagereflector.registry.errors import InvalidResponseError, PaginationError, parse_error_body

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


def next_page_url(request_url: str, link_values: Iterable[str], *, base: str) -> str | None:
    """The path and query of the next page, or ``None`` on the last page.

    Relative links resolve against ``request_url``. ``base`` is ``scheme://host`` of
    the scan; a link to another host raises ``PaginationError``.
    """
    for link in parse_link_header(link_values):
        if "next" not in link.rels or not link.target:
            continue
        target = urlsplit(urljoin(request_url, link.target))
        origin = urlsplit(base)
        if target.scheme not in ("http", "https") or target.netloc != origin.netloc:
            shown = target.hostname or "an unusable URL"
            raise PaginationError(
                f"GET {request_url}: the Link header points to another host ({shown}); "
                "not followed"
            )
        return urlunsplit(("", "", target.path or "/", target.query, ""))
    return None


def parse_tags_page(body: bytes, *, what: str) -> list[str]:
    """The tags of one ``tags/list`` page, in the registry's order."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidResponseError(f"{what}: tags response is not JSON") from None
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
