"""Hostile registries against ``imagereflector scan`` (the controller's own scan path).

A tenant chooses the registry; the registry then chooses everything it answers. Each test
plays one attack or one kind of garbage from a scripted server on loopback
(``tests.fakes.hostile``) and checks the promise of ``docs/security.md`` it threatens:

* credentials stay with their origin (no ``Authorization`` and no credential-bearing body
  to another scheme, host or port; nothing sent to metadata addresses);
* no server-supplied text carries a secret into the output;
* whole-scan bounds on tags and bytes end a scan with ``ReadOperationFailed``;
* no answer produces a traceback: the CLI prints ``<Reason>: <message>`` and exits 1,
  and an unusable header on a successful answer is ignored;
* only tags of the distribution grammar reach the output and the store.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from imagereflector.registry.tags import tags_revision
from tests.fakes.hostile import Handler, HostileRegistry, Reply, Seen, json_reply, tags_reply
from tests.security.hostile_support import (
    IDENTITY_TOKEN,
    ISSUED_TOKEN,
    PASSWORD,
    REGISTRY_TOKEN,
    USERNAME,
    basic_pair,
    cli,
    docker_config,
    leaks,
)

TAGS_PATH = "/v2/app/tags/list"
GOOD = ["1.0.0", "1.1.0"]


def bearer_challenge(realm: str) -> Reply:
    return Reply(401, [("WWW-Authenticate",
                        f'Bearer realm="{realm}",service="reg",scope="repository:app:pull"')])


BASIC_CHALLENGE = Reply(401, [("WWW-Authenticate", 'Basic realm="reg"')])


def requires(header: str, then: Reply) -> Handler:
    """A handler answering ``then`` only to requests carrying ``header`` exactly."""
    def handle(seen: Seen) -> Reply:
        if seen.header("authorization") != header:
            return BASIC_CHALLENGE
        return then
    return handle


async def scan(registry: HostileRegistry, *extra: str) -> tuple[int, str, str]:
    return await cli("scan", f"{registry.host}/app", "--timeout", "10s", *extra)


def failed_with(result: tuple[int, str, str], *parts: str) -> str:
    """Assert a clean failure: exit 1, one ``ReadOperationFailed`` line, no traceback."""
    code, out, err = result
    assert code == 1, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


# --- credentials stay with their origin -------------------------------------------------


@pytest.mark.parametrize("status", [307, 308])
async def test_a_refresh_token_is_not_replayed_to_another_origin(
        tmp_path: Path, status: int) -> None:
    async with HostileRegistry() as reg, HostileRegistry(bind="127.0.0.2") as thief:
        reg.route("/v2/", bearer_challenge(f"http://127.0.0.1:{reg.port}/token"))
        reg.route("/token", Reply(status, [("Location", f"{thief.url}/steal")]))
        thief.route("/steal", json_reply({"token": "stolen"}))
        config = docker_config(tmp_path / "c.json", reg.host, identitytoken=IDENTITY_TOKEN)
        result = await scan(reg, "--docker-config", str(config))
        failed_with(result, "ReadOperationFailed: scan failed:",
                    "redirected a credential exchange to another origin")
        assert thief.requests == []
        assert IDENTITY_TOKEN in reg.seen("/token")[0].body.decode()


async def test_a_refresh_token_may_follow_a_307_on_its_own_origin(tmp_path: Path) -> None:
    async with HostileRegistry() as reg:
        reg.route("/v2/", bearer_challenge(f"http://127.0.0.1:{reg.port}/token"))
        reg.route("/token", Reply(307, [("Location", "/token2")]))
        reg.route("/token2", json_reply({"access_token": ISSUED_TOKEN}))
        reg.route(TAGS_PATH, tags_reply("app", GOOD))
        config = docker_config(tmp_path / "c.json", reg.host, identitytoken=IDENTITY_TOKEN)
        code, _, err = await scan(reg, "--docker-config", str(config))
        assert code == 0, err
        assert IDENTITY_TOKEN in reg.seen("/token2")[0].body.decode()
        assert reg.seen(TAGS_PATH)[-1].header("authorization") == f"Bearer {ISSUED_TOKEN}"


@pytest.mark.parametrize("where", ["other-port", "other-host"])
async def test_basic_credentials_do_not_follow_a_redirect_to_another_origin(
        where: str) -> None:
    bind = "127.0.0.1" if where == "other-port" else "127.0.0.3"
    async with HostileRegistry() as reg, HostileRegistry(bind=bind) as other:
        reg.route("/v2/", BASIC_CHALLENGE)
        reg.route(TAGS_PATH, requires(f"Basic {basic_pair()}",
                                      Reply(302, [("Location", f"{other.url}{TAGS_PATH}")])))
        other.route(TAGS_PATH, tags_reply("app", GOOD))
        code, _, err = await scan(reg, "--username", USERNAME, "--password", PASSWORD)
        assert code == 0, err
        assert [r.header("authorization") for r in other.requests] == [None]


async def test_a_bearer_token_does_not_follow_a_redirect_to_another_origin() -> None:
    async with HostileRegistry() as reg, HostileRegistry(bind="127.0.0.2") as other:
        reg.route("/v2/", bearer_challenge(f"http://127.0.0.1:{reg.port}/token"))
        reg.route("/token", json_reply({"token": ISSUED_TOKEN}))
        reg.route(TAGS_PATH, Reply(307, [("Location", f"{other.url}{TAGS_PATH}")]))
        other.route(TAGS_PATH, tags_reply("app", GOOD))
        code, _, err = await scan(reg, "--username", USERNAME, "--password", PASSWORD)
        assert code == 0, err
        assert [r.header("authorization") for r in other.requests] == [None]


METADATA_TARGETS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/instance/",
    "http://[::ffff:169.254.169.254]/latest/",
    "http://[fe80::1]/",
    "http://169.254.170.2/v2/credentials",
]


@pytest.mark.parametrize("target", METADATA_TARGETS,
                         ids=["aws", "aws-v6", "gcp", "mapped-v4", "link-local-v6", "ecs"])
@pytest.mark.parametrize("via", ["location", "link", "realm"])
async def test_no_request_goes_to_a_metadata_address(target: str, via: str) -> None:
    async with HostileRegistry() as reg:
        if via == "location":
            reg.route(TAGS_PATH, Reply(302, [("Location", target)]))
        elif via == "link":
            reg.route(TAGS_PATH, tags_reply("app", GOOD, [("Link", f'<{target}>; rel="next"')]))
        else:
            reg.route("/v2/", bearer_challenge(target))
        result = await scan(reg, "--username", USERNAME, "--password", PASSWORD)
        failed_with(result, "on a link-local or cloud metadata address", "not followed")


# --- no server-supplied text carries a secret into a message --------------------------


async def _echoing(reg: HostileRegistry, site: str) -> None:
    """Script ``reg`` to echo credentials back at ``site`` and then fail."""
    error = {"errors": [{"code": "DENIED", "message": "denied"}]}
    if site == "link-query":
        reg.route(TAGS_PATH, lambda seen: (
            tags_reply("app", GOOD, [("Link", f'</v2/app/tags/list?last=x&token='
                                      f'{(seen.header("authorization") or "")[7:]}>; rel="next"')])
            if "last=" not in seen.target else json_reply(error, 500)))
    elif site == "location-query":
        reg.route(TAGS_PATH, lambda seen: (
            Reply(302, [("Location", f"/v2/app/tags/list?pw={PASSWORD}&auth={basic_pair()}")])
            if "pw=" not in seen.target else json_reply(error, 404)))
    elif site == "location-path":
        reg.route(TAGS_PATH, Reply(302, [("Location", f"/v2/{basic_pair()}/x")]))
    elif site == "error-body":
        reg.route(TAGS_PATH, json_reply({"errors": [{
            "code": "DENIED", "message": f"bad {PASSWORD} / {basic_pair()} / "
            f"{json.dumps(PASSWORD)}"}]}, 403))
    elif site == "token-error":
        reg.route("/v2/", bearer_challenge(f"http://127.0.0.1:{reg.port}/token"))
        reg.route("/token", lambda seen: json_reply(
            {"error": "invalid_grant", "error_description": f"{seen.body.decode()} expired"},
            400))
    elif site == "realm-query":
        reg.route("/v2/", bearer_challenge(
            f"http://127.0.0.1:{reg.port}/token?echo={PASSWORD}"))
        reg.route("/token", json_reply(error, 401))


@pytest.mark.parametrize("site", ["link-query", "location-query", "location-path",
                                  "error-body", "token-error", "realm-query"])
async def test_echoed_credentials_never_reach_the_output(tmp_path: Path, site: str) -> None:
    async with HostileRegistry() as reg:
        await _echoing(reg, site)
        if site == "token-error":
            config = docker_config(tmp_path / "c.json", reg.host, identitytoken=IDENTITY_TOKEN)
            result = await scan(reg, "--docker-config", str(config))
        else:
            result = await scan(reg, "--username", USERNAME, "--password", PASSWORD)
        for output in ("text", "json"):
            code, out, err = result if output == "text" else await scan(
                reg, "--username", USERNAME, "--password", PASSWORD, "-o", "json")
            assert code == 1
            assert leaks(out + err) == [], (site, out + err)
        failed_with(result, "ReadOperationFailed: scan failed:")


async def test_a_registry_token_from_a_docker_config_is_never_echoed(tmp_path: Path) -> None:
    async with HostileRegistry() as reg:
        reg.route("/v2/", BASIC_CHALLENGE)
        reg.route(TAGS_PATH, lambda seen: json_reply({"errors": [{
            "code": "DENIED", "message": f"token {seen.header('authorization')}"}]}, 403))
        config = docker_config(tmp_path / "c.json", reg.host, registrytoken=REGISTRY_TOKEN)
        result = await scan(reg, "--docker-config", str(config))
        line = failed_with(result, "ReadOperationFailed: scan failed:", "DENIED: token")
        assert leaks(line) == []


# --- memory is bounded whatever the registry sends -------------------------------------


def paged(reg: HostileRegistry, pages: int, per_page: int, width: int = 8) -> None:
    """``pages`` pages of ``per_page`` tags each, linked with ``Link``."""
    def handle(seen: Seen) -> Reply:
        index = int(seen.target.split("page=")[1]) if "page=" in seen.target else 0
        tags = [f"p{index}-{i:0{width}d}" for i in range(per_page)]
        links = [("Link", f'</v2/app/tags/list?page={index + 1}>; rel="next"')] \
            if index + 1 < pages else []
        return tags_reply("app", tags, links)
    reg.route(TAGS_PATH, handle)


async def test_the_tag_count_is_bounded_across_pages() -> None:
    async with HostileRegistry() as reg:
        paged(reg, pages=3, per_page=50)
        failed_with(await scan(reg, "--max-tags-per-scan", "120"),
                    "more than 120 tags after 3 page(s); stopped (see --max-tags-per-scan)")
        code, out, err = await scan(reg, "--max-tags-per-scan", "150")
        assert code == 0, err
        assert "Tag Count:  150" in out


async def test_the_bytes_are_bounded_across_pages() -> None:
    async with HostileRegistry() as reg:
        paged(reg, pages=4, per_page=20, width=60)
        failed_with(await scan(reg, "--max-tag-bytes-per-scan", "4000"),
                    "passed 4000 bytes; stopped (see --max-tag-bytes-per-scan)")
        assert len(reg.seen(TAGS_PATH)) <= 3


async def test_a_page_of_millions_of_tiny_strings_is_refused_before_it_is_parsed() -> None:
    body = b'{"name":"app","tags":[' + b",".join([b'"ab"'] * 1_500_000) + b"]}"
    async with HostileRegistry() as reg:
        reg.route(TAGS_PATH, Reply(200, [("Content-Type", "application/json")], body))
        failed_with(await scan(reg, "--max-tag-bytes-per-scan", str(16 << 20)),
                    "more than the 100000 tags the scan may still take")


# --- no traceback from any registry answer ----------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"tags":' + b"[" * 100_000 + b"]" * 100_000 + b"}"



def linking(target: str | bytes) -> Reply:
    """A good first page whose ``Link`` names ``target`` as the next page."""
    value = (b"<" + target + b'>; rel="next"') if isinstance(target, bytes) \
        else f'<{target}>; rel="next"'
    return tags_reply("app", GOOD, [("Link", value)])


GARBAGE_ANSWERS: list[tuple[str, dict[str, Reply], str]] = [
    ("deep-tags", {TAGS_PATH: Reply(200, [], DEEP_OBJECT)}, "tags response is nested too deeply"),
    ("deep-error", {TAGS_PATH: Reply(500, [], DEEP)}, "unexpected status code 500"),
    ("non-utf8-tags", {TAGS_PATH: Reply(200, [], b'{"tags":["\xff\xfe"]}')},
     "tags response is not JSON"),
    ("non-utf8-error", {TAGS_PATH: Reply(403, [], b'{"errors":[{"code":"D","message":"\xff"}]}')},
     "unexpected status code 403"),
    ("surrogate-error", {TAGS_PATH: json_reply(
        {"errors": [{"code": "DENIED", "message": "bad \ud800 text\nforged"}]}, 403)},
     "DENIED: bad \ufffd text forged"),
    ("link-unbalanced", {TAGS_PATH: linking("http://[::1/x")}, "next-page Link (answer to GET"),
    ("link-bad-port", {TAGS_PATH: linking("http://h:99999/x")}, "is not a valid URL"),
    ("link-non-utf8", {TAGS_PATH: linking(b"/v2/\xff\xfe")}, "scan failed"),
    ("location-unbalanced", {TAGS_PATH: Reply(302, [("Location", "http://[::1/x")])},
     "redirect target (answer to GET"),
    ("location-bad-port", {TAGS_PATH: Reply(302, [("Location", "http://127.0.0.1:70000/x")])},
     "is not a valid URL"),
    ("location-scheme", {TAGS_PATH: Reply(302, [("Location", "javascript:alert(1)")])},
     "not an http or https URL"),
    ("location-ftp", {TAGS_PATH: Reply(301, [("Location", "ftp://127.0.0.1/x")])},
     "not an http or https URL"),
    ("location-non-utf8", {TAGS_PATH: Reply(302, [("Location", b"/v2/\xff/x")])},
     "scan failed"),
    ("realm-unbalanced", {"/v2/": bearer_challenge("http://[::1/x")}, "token realm"),
    ("realm-scheme", {"/v2/": bearer_challenge("gopher://127.0.0.1/x")},
     "not an http or https URL"),
    ("retry-after-huge", {TAGS_PATH: Reply(429, [("Retry-After", "9" * 5000)])},
     "unexpected status code 429"),
    ("retry-after-arabic", {TAGS_PATH: Reply(503, [("Retry-After", "\u0663\u0663")])},
     "unexpected status code 503"),
    ("retry-after-garbage", {TAGS_PATH: Reply(429, [("Retry-After", "soon, maybe")])},
     "unexpected status code 429"),
]


@pytest.mark.parametrize(("script", "expected"), [(s, e) for _, s, e in GARBAGE_ANSWERS],
                         ids=[i for i, _, _ in GARBAGE_ANSWERS])
async def test_garbage_answers_are_clean_failures(script: dict[str, Reply],
                                                  expected: str) -> None:
    async with HostileRegistry() as reg:
        for path, reply in script.items():
            reg.route(path, reply)
        line = failed_with(await scan(reg), "ReadOperationFailed: scan failed:", expected)
        assert line.isprintable()


@pytest.mark.parametrize("token", ["abc\r\nX-Injected: 1", "abc\ndef", "abc\x00def",
                                   "abc def", "t\u00f6ken", "x" * 40_000],
                         ids=["crlf", "lf", "nul", "space", "non-ascii", "huge"])
async def test_tokens_that_cannot_go_in_a_header_are_refused(token: str) -> None:
    async with HostileRegistry() as reg:
        reg.route("/v2/", bearer_challenge(f"http://127.0.0.1:{reg.port}/token"))
        reg.route("/token", json_reply({"token": token}))
        failed_with(await scan(reg), "ReadOperationFailed: scan failed:", "token", "refused")
        assert reg.seen(TAGS_PATH) == []


async def test_a_registry_token_with_a_newline_is_refused(tmp_path: Path) -> None:
    async with HostileRegistry() as reg:
        reg.route("/v2/", BASIC_CHALLENGE)
        config = docker_config(tmp_path / "c.json", reg.host, registrytoken="abc\r\nX: y")
        failed_with(await scan(reg, "--docker-config", str(config)),
                    "the registry token contains characters that cannot be sent")


@pytest.mark.parametrize(("name", "value"), [
    ("Retry-After", "9" * 5000), ("Retry-After", "\u0663"), ("Retry-After", "-1"),
    ("ratelimit-remaining", "9" * 5000), ("ratelimit-remaining", "\u0663;w=1"),
    ("ratelimit-remaining", "lots"), ("Link", "garbage without brackets"),
], ids=["retry-huge", "retry-arabic", "retry-negative", "remaining-huge",
        "remaining-arabic", "remaining-words", "link-garbage"])
async def test_unusable_headers_on_a_success_are_ignored(name: str, value: str) -> None:
    async with HostileRegistry() as reg:
        reg.route(TAGS_PATH, tags_reply("app", GOOD, [(name, value)]))
        code, out, err = await scan(reg)
        assert code == 0, err
        assert "Tag Count:  2" in out


# --- only valid tags exist ---------------------------------------------------------------

INVALID_TAGS = ["a\nb", "", "x" * 129, "-lead", ".lead", "s p", "\u00fcml",
                "\ud800", "ok\r", "Canonical Image Name:  forged"]
VALID = ["1.0.0", "v2", "_x", "A" + "b" * 127, "latest"]


async def test_invalid_tags_are_skipped_counted_and_never_printed(tmp_path: Path) -> None:
    async with HostileRegistry() as reg:
        reg.route(TAGS_PATH, tags_reply("app", [*VALID[:2], *INVALID_TAGS, *VALID[2:]]))
        code, out, err = await scan(reg, "--storage-path", str(tmp_path / "store"))
        assert code == 0, err
        assert out.count("Canonical Image Name") == 1
        assert "forged" not in out
        assert "Tag Count:  5" in out
        assert f"Revision:   {tags_revision(VALID)}" in out
        warnings = [line for line in err.splitlines() if "skipped" in line]
        assert len(warnings) == 1
        assert "skipped 10 tag(s)" in warnings[0]
        code, out, _ = await scan(reg, "-o", "json")
        result = json.loads(out)["lastScanResult"]
        assert result["tagCount"] == 5
        assert set(result["latestTags"]) == set(VALID)
    with sqlite3.connect(tmp_path / "store" / "tags.db") as db:
        stored = [row for row in db.execute("select * from objects")]
    assert stored, "the scan stored its tags"
    assert all("forged" not in repr(row) and "\\n" not in repr(row) for row in stored)


async def test_lists_that_differ_only_in_invalid_tags_share_nothing_with_valid_ones() -> None:
    # Under newline-joined revisions ["a\nb"] and ["a", "b"] would collide; the first is
    # now an empty list, the second a list of two.
    async with HostileRegistry() as reg:
        reg.route(TAGS_PATH, tags_reply("app", ["a\nb"]))
        code, out, _ = await scan(reg, "-o", "json")
        assert code == 0
        forged = json.loads(out)["lastScanResult"]
        reg.route(TAGS_PATH, tags_reply("app", ["a", "b"]))
        code, out, _ = await scan(reg, "-o", "json")
        real = json.loads(out)["lastScanResult"]
    assert forged["tagCount"] == 0
    assert real["tagCount"] == 2
    assert forged["revision"] != real["revision"]


async def test_policy_output_never_shows_an_invalid_tag() -> None:
    async with HostileRegistry() as reg:
        reg.route(TAGS_PATH, tags_reply("app", ["1.0.0", "2.0.0\nLatest:      9.9.9", "1.2.0"]))
        code, out, err = await cli("policy", f"{reg.host}/app", "--semver", ">=1.0.0",
                                   "--timeout", "10s")
        assert code == 0, err
        assert "9.9.9" not in out
        assert "Latest:      1.2.0" in out
