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
    go_value,
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
        method="GET", url=URL, status=status, body=b""
    )
    assert type(error) is kind
    assert error.status == status


def test_message_names_request_and_registry_error() -> None:
    error = error_for_status(
        method="GET", url=URL, status=401,
        body=_body(("UNAUTHORIZED", "authentication required")),
    )
    assert str(error) == f"GET {URL}: UNAUTHORIZED: authentication required"
    assert error.codes == ("UNAUTHORIZED",)


def test_several_registry_errors_are_joined_as_go_containerregistry_does() -> None:
    error = error_for_status(
        method="GET", url=URL, status=404,
        body=_body(("NAME_UNKNOWN", "repository name not known"), ("X", "")),
    )
    assert str(error) == (f"GET {URL}: multiple errors returned: NAME_UNKNOWN: repository "
                          "name not known; X:")


def test_a_detail_is_shown_as_go_prints_it() -> None:
    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                   "detail": [{"Type": "repository", "Name": "a/b",
                                               "Action": "pull", "Class": "", "N": 123456789}]}]})
    error = error_for_status(method="GET", url=URL, status=401, body=body.encode())
    assert str(error) == (f"GET {URL}: UNAUTHORIZED: authentication required; "
                          "[map[Action:pull Class: N:1.23456789e+08 Name:a/b Type:repository]]")


@pytest.mark.parametrize(("raw", "shown"), [
    ('{"name":"x"}', "map[name:x]"), ("1", "1"), ("1.5", "1.5"), ("123456789", "1.23456789e+08"),
    ("1e21", "1e+21"), ("0.00001", "1e-05"), ("100000", "100000"), ("1e6", "1e+06"),
    ("0.0001", "0.0001"), ("true", "true"), ('"s"', "s"), ("-0.0", "-0"),
    ('{"b":[1,2,{"c":null}],"a":"x y"}', "map[a:x y b:[1 2 map[c:<nil>]]]"),
    ("12345678901234567890123", "1.2345678901234568e+22")])
def test_go_value_matches_go_fmt(raw: str, shown: str) -> None:
    # Expected values printed by Go 1.26's fmt.Printf("%v") of json.Unmarshal into any.
    assert go_value(json.loads(raw, parse_int=float)) == shown


def test_without_error_body_the_status_and_body_are_named() -> None:
    error = error_for_status(method="GET", url=URL, status=502, body=b"<html>")
    assert str(error) == f"GET {URL}: unexpected status code 502 Bad Gateway: <html>"
    error = error_for_status(method="HEAD", url=URL, status=404, body=b"")
    assert str(error) == (f"HEAD {URL}: unexpected status code 404 Not Found (HEAD responses "
                          "have no body, use GET for details)")


def test_an_oauth_error_body_is_not_a_distribution_error() -> None:
    body = json.dumps({"error": "invalid_grant", "error_description": "expired"}).encode()
    assert parse_error_body(body) == ()
    error = error_for_status(method="POST", url=URL, status=400, body=body)
    assert str(error) == (f"POST {URL}: unexpected status code 400 Bad Request: "
                          '{"error": "invalid_grant", "error_description": "expired"}')


def test_retry_after_is_mentioned() -> None:
    error = error_for_status(
        method="GET", url=URL, status=429, body=_body(("TOOMANYREQUESTS", "slow")),
        retry_after=3600,
    )
    assert str(error).endswith("(registry asks to retry after 3600s)")


def test_registry_text_is_one_short_line() -> None:
    echoed = "leaked\nsecond line " + "x" * 1000
    error = error_for_status(
        method="GET", url=URL, status=401, body=_body(("DENIED", echoed)),
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
