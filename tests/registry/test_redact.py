"""The one redaction step: secrets in every echoed form, registry-chosen URL parts,
control characters and surrogates never survive ``scrub``."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagereflector.registry.errors import AuthError
from imagereflector.registry.redact import MAX_MESSAGE_CHARS, scrub, scrub_error

SECRET = 'p"w&=?/+ :9'


@pytest.mark.parametrize("form", [
    SECRET, quote(SECRET, safe=""), quote_plus(SECRET), json.dumps(SECRET)[1:-1],
    base64.b64encode(SECRET.encode()).decode(),
    base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
], ids=["raw", "percent", "plus", "json", "base64", "base64url"])
def test_every_echoed_form_of_a_secret_is_removed(form: str) -> None:
    assert form not in scrub(f"denied: {form} is wrong", [SECRET])
    assert "<redacted>" in scrub(f"denied: {form} is wrong", [SECRET])


def test_the_longest_secret_goes_first() -> None:
    assert scrub("abc abcdef", ["abc", "abcdef"]) == "<redacted> <redacted>"


@pytest.mark.parametrize(("text", "expected"), [
    ("GET https://r.example/v2/a/tags/list?n=1000: DENIED",
     "GET https://r.example/v2/a/tags/list?n=1000: DENIED"),
    ("GET https://r.example/v2/a/tags/list?n=1000&last=x&token=T: DENIED",
     "GET https://r.example/v2/a/tags/list: DENIED"),
    ("see http://user:pw@evil.example:81/x?y=1#frag.",
     "see http://evil.example:81/x."),
    ("realm https://auth.example/token?service=a&secret=b failed",
     "realm https://auth.example/token failed"),
    ("odd http://[::1/x?q=1 text", "odd http://[::1/x text"),
], ids=["own-page-size-kept", "link-query-dropped", "userinfo-and-fragment", "realm-query",
        "unparsable-url"])
def test_urls_lose_userinfo_and_registry_chosen_queries(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_control_characters_and_surrogates_cannot_make_lines_or_break_encoders() -> None:
    text = scrub("a\r\nForged: line\x00b\x85c\u2028d\ud800e\x1b[31m")
    assert text == "a Forged: line b c d\ufffde [31m"
    text.encode("utf-8")
    assert len(text.splitlines()) == 1


def test_messages_are_bounded() -> None:
    assert len(scrub("x" * 100_000)) == MAX_MESSAGE_CHARS


def test_scrub_error_keeps_type_status_and_codes() -> None:
    error = scrub_error(AuthError(f"bad {SECRET}", status=401, codes=("DENIED",)), [SECRET])
    assert (type(error), error.status, error.codes) == (AuthError, 401, ("DENIED",))
    assert SECRET not in str(error)
    assert SECRET not in repr(error.args)


@given(st.text(), st.text(min_size=4, alphabet=st.characters(codec="utf-8")))
def test_scrub_never_raises_and_never_keeps_the_secret(text: str, secret: str) -> None:
    cleaned = scrub(f"{text}{secret}{text}", [secret])
    cleaned.encode("utf-8")
    assert "\n" not in cleaned
    if secret.strip() and secret.isprintable():
        assert secret not in cleaned
