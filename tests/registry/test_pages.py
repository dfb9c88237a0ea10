"""Link headers, tag bodies and page-size rejections (pure functions)."""

from __future__ import annotations

import json

import pytest

from imagereflector.registry.errors import InvalidResponseError, PaginationError
from imagereflector.registry.pages import (
    Link,
    next_page_url,
    parse_link_header,
    parse_tags_page,
    rejects_page_size,
)

REQUEST = "https://r.example/v2/a/b/tags/list?n=1000"
BASE = "https://r.example"
HOST = "r.example"


def test_parse_link_header_reads_targets_and_rels() -> None:
    links = parse_link_header(
        ['</v2/a/tags/list?n=2&last=x>; rel="next", <https://o.example/x>; rel="prev first"']
    )
    assert links == (
        Link("/v2/a/tags/list?n=2&last=x", frozenset({"next"})),
        Link("https://o.example/x", frozenset({"prev", "first"})),
    )


def test_parse_link_header_keeps_commas_inside_urls_and_reads_several_values() -> None:
    links = parse_link_header(["</a?x=1,2>; rel=next", '</b>; title="a, b"; REL="Next"'])
    assert [(link.target, link.rels) for link in links] == [
        ("/a?x=1,2", frozenset({"next"})),
        ("/b", frozenset({"next"})),
    ]


def test_parse_link_header_skips_garbage() -> None:
    assert parse_link_header(["no angle brackets; rel=next", ""]) == ()


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ([], None),
        (['</v2/a/b/tags/list?n=1000&last=t9>; rel="next"'], "/v2/a/b/tags/list?n=1000&last=t9"),
        (["<tags/list?last=z>; rel=next"], "/v2/a/b/tags/tags/list?last=z"),
        (['<https://r.example/v2/a/b/tags/list?last=z>; rel="next"'], "/v2/a/b/tags/list?last=z"),
        (['<http://r.example/v2/a/b/tags/list?last=z>; rel="next"'], "/v2/a/b/tags/list?last=z"),
        (['</v2/a/b/tags/list?last=z>; rel="prev"'], None),
    ],
    ids=["none", "relative-path", "relative-to-request", "absolute-same-host",
         "absolute-http-keeps-scheme", "not-next"],
)
def test_next_page_url(links: list[str], expected: str | None) -> None:
    assert next_page_url(REQUEST, links, base=BASE, registry=HOST) == expected


@pytest.mark.parametrize(
    "link",
    ['<https://evil.example/v2/a/tags/list>; rel="next"',
     '<https://r.example:444/v2/a/tags/list>; rel="next"'],
    ids=["other-host", "other-port"],
)
def test_links_off_the_host_are_refused(link: str) -> None:
    with pytest.raises(PaginationError, match="another host"):
        next_page_url(REQUEST, [link], base=BASE, registry=HOST)


@pytest.mark.parametrize(
    ("link", "why"),
    [('<https://user:pw@r.example/v2/a/tags/list>; rel="next"', "with credentials in it"),
     ('<ftp://r.example/x>; rel="next"', "not an http or https URL"),
     ('<http://[::1/x>; rel="next"', "not a valid URL"),
     ('<http://r.example:99999/x>; rel="next"', "not a valid URL"),
     ('<http://169.254.169.254/latest>; rel="next"', "link-local or cloud metadata"),
     ('<http://metadata.google.internal/computeMetadata/v1/>; rel="next"',
      "link-local or cloud metadata"),
     ('<http://r.example/a b>; rel="next"', "spaces or control characters")],
    ids=["userinfo", "other-scheme", "unbalanced-bracket", "bad-port", "aws-metadata",
         "gcp-metadata", "space"],
)
def test_unusable_next_links_end_the_scan_with_a_reason(link: str, why: str) -> None:
    with pytest.raises(InvalidResponseError, match=why) as info:
        next_page_url(REQUEST, [link], base=BASE, registry=HOST)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "a", "tags": ["1", "0", "b"]}, ["1", "0", "b"]),
        ({"name": "a", "tags": None}, []),
        ({"name": "a"}, []),
    ],
    ids=["order-kept", "null", "missing"],
)
def test_parse_tags_page(body: object, expected: list[str]) -> None:
    assert parse_tags_page(json.dumps(body).encode(), what="GET u") == expected


@pytest.mark.parametrize(
    "body",
    [b"<html>", b"[1,2]", b'{"tags": "1.0"}', b'{"tags": [1, 2]}', b"\xff\xfe"],
    ids=["html", "array", "string", "numbers", "binary"],
)
def test_parse_tags_page_refuses_other_shapes(body: bytes) -> None:
    with pytest.raises(InvalidResponseError, match="GET u"):
        parse_tags_page(body, what="GET u")


def _errors(code: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": "m"}]}).encode()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, b"", True),
        (400, _errors("SOMETHING"), True),
        (403, _errors("TOO_MANY_TAGS_REQUESTED"), True),
        (422, _errors("PAGINATION_NUMBER_INVALID"), True),
        (403, _errors("DENIED"), False),
        (404, _errors("NAME_UNKNOWN"), False),
        (500, _errors("PAGINATION_NUMBER_INVALID"), False),
    ],
    ids=["any-400", "400-other-code", "quay", "distribution-code", "denied", "unknown",
         "server-error"],
)
def test_rejects_page_size(status: int, body: bytes, expected: bool) -> None:
    assert rejects_page_size(status, body) is expected
