"""Error classification and message shape: typed, one line, registry codes, no secrets."""

from __future__ import annotations

import json

import pytest

from imagereflector.registry.errors import (
    AuthError,
    InvalidResponseError,
    NotFoundError,
    RegistryError,
    RegistryUnavailable,
    decode_json,
    error_for_status,
    parse_error_body,
)

URL = "https://r.example/v2/a/tags/list?n=1000"


def _body(*entries: tuple[str, str]) -> bytes:
    return json.dumps({"errors": [{"code": c, "message": m} for c, m in entries]}).encode()


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, AuthError), (403, AuthError), (404, NotFoundError), (429, RegistryUnavailable),
     (503, RegistryUnavailable), (408, RegistryUnavailable), (400, RegistryError)],
)
def test_status_decides_the_type(status: int, kind: type[RegistryError]) -> None:
    error = error_for_status(
        method="GET", url=URL, status=status, reason="R", body=b""
    )
    assert type(error) is kind
    assert error.status == status


def test_message_names_request_and_registry_error() -> None:
    error = error_for_status(
        method="GET", url=URL, status=401, reason="Unauthorized",
        body=_body(("UNAUTHORIZED", "authentication required")),
    )
    assert str(error) == f"GET {URL}: UNAUTHORIZED: authentication required"
    assert error.codes == ("UNAUTHORIZED",)


def test_several_registry_errors_are_joined() -> None:
    error = error_for_status(
        method="GET", url=URL, status=404, reason="Not Found",
        body=_body(("NAME_UNKNOWN", "repository name not known"), ("X", "")),
    )
    assert str(error) == f"GET {URL}: NAME_UNKNOWN: repository name not known; X"


def test_without_error_body_the_status_is_named() -> None:
    error = error_for_status(
        method="HEAD", url=URL, status=502, reason="Bad Gateway", body=b"<html>"
    )
    assert str(error) == f"HEAD {URL}: unexpected status code 502 Bad Gateway"


def test_oauth_error_shape_is_understood() -> None:
    body = json.dumps({"error": "invalid_grant", "error_description": "expired"}).encode()
    assert [(d.code, d.message) for d in parse_error_body(body)] == [("invalid_grant", "expired")]


def test_retry_after_is_mentioned() -> None:
    error = error_for_status(
        method="GET", url=URL, status=429, reason="", body=_body(("TOOMANYREQUESTS", "slow")),
        retry_after=3600,
    )
    assert str(error).endswith("(registry asks to retry after 3600s)")


def test_registry_text_is_one_short_line() -> None:
    echoed = "leaked\nsecond line " + "x" * 1000
    error = error_for_status(
        method="GET", url=URL, status=401, reason="", body=_body(("DENIED", echoed)),
    )
    text = str(error)
    assert "\n" not in text
    assert len(text) < 400


def test_deeply_nested_bodies_are_not_errors_bodies_and_never_raise() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert parse_error_body(deep) == ()
    with pytest.raises(InvalidResponseError, match="tags response is nested too deeply"):
        decode_json(deep, what="tags response")
    with pytest.raises(InvalidResponseError, match="token response is not JSON"):
        decode_json(b"\xff\xfe{", what="token response")
