"""The bad-input corpus: every malformed value a user (or a tool bypassing the CRD schema)
can hand the controller, with the outcome the contract prescribes for it.

Data only; the test modules of this package turn each case into an object in a running
cluster or into a direct call. Messages are the contract's (§2.4, §2.5, §2.8, §3.3) or,
where the contract has none (the CRD schema would have rejected the value), the message
the product's own code intends.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1:5000"
"""The registry string the dockerconfig cases are written for (replaced per test)."""

AUTH_PREFIX = "failed to configure authentication options: "

# Planted values: never allowed to appear in any message built from the cases below.
PLANTED_PASSWORD = "Planted-Pw-9d3f1c"
PLANTED_JSON_TEXT = "Planted-Json-77ab"


@dataclass(frozen=True, slots=True)
class ImageCase:
    """A ``spec.image`` value and the exact ``ImageURLInvalid`` message it must produce."""

    id: str
    image: Any
    message: str


IMAGE_CASES: tuple[ImageCase, ...] = (
    ImageCase("scheme-https", "https://ghcr.io/app",
              ".spec.image value should not start with URL scheme; remove 'https://'"),
    ImageCase("scheme-oci", "oci://ghcr.io/app",
              ".spec.image value should not start with URL scheme; remove 'oci://'"),
    ImageCase("scheme-with-userinfo", "https://robot:" + PLANTED_PASSWORD + "@ghcr.io/app",
              ".spec.image value should not start with URL scheme; remove 'https://'"),
    ImageCase("tag", "ghcr.io/app:1.0",
              ".spec.image value should not contain a tag; remove ':1.0'"),
    ImageCase("digest", "ghcr.io/app@sha256:" + "a" * 64,
              ".spec.image value should not contain a tag; remove ':" + "a" * 64 + "'"),
    ImageCase("tag-and-digest", "ghcr.io/app:v1@sha256:" + "b" * 64,
              ".spec.image value should not contain a tag; remove ':v1@sha256'"),
    ImageCase("upper-case-repository", "ghcr.io/App", "could not parse reference: ghcr.io/App"),
    ImageCase("upper-case-everything", "GHCR.IO/APP", "could not parse reference: GHCR.IO/APP"),
    ImageCase("unicode", "ghcr.io/äpp", "could not parse reference: ghcr.io/äpp"),
    ImageCase("emoji", "\U0001f4a5", "could not parse reference: \U0001f4a5"),
    ImageCase("overlong", "ghcr.io/" + "a" * 256,
              "could not parse reference: ghcr.io/" + "a" * 256),
    ImageCase("empty", "", "could not parse reference: "),
    ImageCase("blank", " ", "could not parse reference:  "),
    ImageCase("trailing-space", "ghcr.io/app ", "could not parse reference: ghcr.io/app "),
    ImageCase("leading-tab", "\tghcr.io/app", "could not parse reference: \tghcr.io/app"),
    ImageCase("inner-space", "ghcr.io/a pp", "could not parse reference: ghcr.io/a pp"),
    ImageCase("newline", "ghcr.io/app\n", "could not parse reference: ghcr.io/app\n"),
    ImageCase("single-char", "a", "could not parse reference: a"),
    ImageCase("empty-tag", "ghcr.io/app:", "could not parse reference: ghcr.io/app:"),
    ImageCase("at-alone", "@", "could not parse reference: <redacted>@"),
    ImageCase("trailing-at", "ghcr.io/app@", "could not parse reference: <redacted>@"),
    ImageCase("userinfo", "robot:" + PLANTED_PASSWORD + "@ghcr.io/app",
              "could not parse reference: <redacted>@ghcr.io/app"),
    ImageCase("negative-port", "ghcr.io:-1/app", "could not parse reference: ghcr.io:-1/app"),
    ImageCase("port-letters", "ghcr.io:abc/app", "could not parse reference: ghcr.io:abc/app"),
    ImageCase("unclosed-ipv6", "[::1/app", "could not parse reference: [::1/app"),
)
"""Invalid references: Stalled ``ImageURLInvalid`` with exactly this message, no retry."""

WEAK_BUT_VALID_IMAGES: tuple[tuple[str, str], ...] = (
    ("ghcr.io//app", "ghcr.io//app"),
    ("//ghcr.io/app", "index.docker.io///ghcr.io/app"),
    ("ghcr.io/app/", "ghcr.io/app/"),
)
"""References go-containerregistry's weak validation accepts (contract §2.4: characters and
length only), with their canonical names; they must parse, not stall."""

OUT_OF_RANGE_PORTS: tuple[str, ...] = ("127.0.0.1:99999/app", "127.0.0.1:65536/app")
"""Ports no socket can use: retrying cannot help, so ``ImageURLInvalid``."""

USERINFO_BEFORE_DIGEST: tuple[str, ...] = (
    "robot:" + PLANTED_PASSWORD + "@ghcr.io/app@sha256:" + "c" * 64,
    "robot:" + PLANTED_PASSWORD + "@ghcr.io/app:1.0@sha256:" + "c" * 64,
)
"""Unparsable references whose last ``@`` introduces a digest but an earlier one ends a
``user:password``: the password must still be redacted (contract A11)."""


@dataclass(frozen=True, slots=True)
class ExclusionCase:
    """An invalid exclusion pattern and the scan failure it must produce."""

    id: str
    pattern: str
    message: str


INVALID_EXCLUSIONS: tuple[ExclusionCase, ...] = (
    ExclusionCase("unclosed-class", "[=",
         "scan failed: failed to compile regex [="
         ": error parsing regexp: missing closing ]: `[=`"),
    ExclusionCase("unclosed-named-group", "(?P<",
                  "scan failed: failed to compile regex (?P<"
                  ": error parsing regexp: invalid or unsupported Perl syntax: `(?P`"),
    ExclusionCase("re2-only-escape", "\\C",
                  "scan failed: failed to compile regex \\C"
                  ": error parsing regexp: invalid escape sequence: `\\C`"),
    ExclusionCase("python-only-escape", "\\Z",
                  "scan failed: failed to compile regex \\Z"
                  ": error parsing regexp: invalid escape sequence: `\\Z`"),
    ExclusionCase("repeat-too-large", "a{1001}",
                  "scan failed: failed to compile regex a{1001}"
                  ": error parsing regexp: invalid repeat count: `{1001}`"),
    ExclusionCase("double-star", "x**",
                  "scan failed: failed to compile regex x**"
                  ": error parsing regexp: invalid nested repetition operator: `**`"),
    ExclusionCase("trailing-backslash", "\\",
                  "scan failed: failed to compile regex \\"
                  ": error parsing regexp: trailing backslash at end of expression: ``"),
)
"""Each fails the scan with ``ReadOperationFailed`` and this message (contract §2.8.3)."""

PATHOLOGICAL_EXCLUSIONS: tuple[str, ...] = ("(a+)+$", "(a|aa)+$", "(x+x+)+y")
"""Patterns that take exponential time in a backtracking engine on the tags below."""

PATHOLOGICAL_TAGS: tuple[str, ...] = (
    "a" * 120 + "-",   # (a+)+$ and (a|aa)+$ backtrack over the a's, then fail on '-'
    "x" * 127,         # (x+x+)+y backtracks over the x's, finds no y
    "a" * 127,         # matched (and excluded) by (a+)+$ and (a|aa)+$
    "1.0.0",
)
PATHOLOGICAL_KEPT = 3
"""How many of ``PATHOLOGICAL_TAGS`` survive all three patterns (``"a" * 127`` is excluded)."""


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _config(document: Any) -> dict[str, Any]:
    return {".dockerconfigjson": _b64(json.dumps(document))}


@dataclass(frozen=True, slots=True)
class SecretCase:
    """A Secret (type and ``data``) named by ``secretRef`` and the exact Ready message."""

    id: str
    type: str
    data: dict[str, Any]
    message: str
    planted: tuple[str, ...] = field(default=(PLANTED_PASSWORD,))
    refused: int | None = None
    """The status a real API server answers when such a Secret is created (400: ``data``
    is not base64; 422: a dockerconfigjson Secret whose key is missing or not a JSON
    object), or None when it stores it. Refused ones never reach a controller there."""


def dockerconfig_cases(host: str) -> tuple[SecretCase, ...]:
    """Broken ``secretRef`` Secrets for an image on ``host``; all ``AuthenticationFailed``.

    Each is put in a namespace of its own; ``<ns>`` in a message stands for it.
    """
    good_auth = _b64(f"robot:{PLANTED_PASSWORD}")
    return (
        SecretCase("not-json", "kubernetes.io/dockerconfigjson",
                   {".dockerconfigjson": _b64(PLANTED_JSON_TEXT + "{")},
                   AUTH_PREFIX + ".dockerconfigjson is not valid JSON: "
                   "Expecting value at line 1 column 1", planted=(PLANTED_JSON_TEXT,),
                   refused=422),
        SecretCase("auths-list", "kubernetes.io/dockerconfigjson",
                   _config({"auths": [PLANTED_PASSWORD]}),
                   AUTH_PREFIX + '.dockerconfigjson: "auths" must be an object, not an array'),
        SecretCase("auths-string", "kubernetes.io/dockerconfigjson",
                   _config({"auths": PLANTED_PASSWORD}),
                   AUTH_PREFIX + '.dockerconfigjson: "auths" must be an object, not a string'),
        SecretCase("document-array", "kubernetes.io/dockerconfigjson",
                   _config([PLANTED_PASSWORD]),
                   AUTH_PREFIX + ".dockerconfigjson must be a JSON object, not an array",
                   refused=422),
        SecretCase("entry-list", "kubernetes.io/dockerconfigjson",
                   _config({"auths": {host: [PLANTED_PASSWORD]}}),
                   AUTH_PREFIX + f'.dockerconfigjson: entry "{host}" must be an object, '
                   "not an array"),
        SecretCase("auth-number", "kubernetes.io/dockerconfigjson",
                   _config({"auths": {host: {"auth": 12345, "password": PLANTED_PASSWORD}}}),
                   AUTH_PREFIX + f'.dockerconfigjson: entry "{host}": field "auth" must be a '
                   "string, not a number"),
        SecretCase("password-number", "kubernetes.io/dockerconfigjson",
                   _config({"auths": {host: {"username": "robot", "password": 4242}}}),
                   AUTH_PREFIX + f'.dockerconfigjson: entry "{host}": field "password" must be '
                   "a string, not a number"),
        SecretCase("auth-bad-base64", "kubernetes.io/dockerconfigjson",
                   _config({"auths": {host: {"auth": "robot!" + PLANTED_PASSWORD}}}),
                   AUTH_PREFIX + "unable to decode auth "
                   "field: illegal base64 data at input byte 5"),
        SecretCase("auth-without-colon", "kubernetes.io/dockerconfigjson",
                   _config({"auths": {host: {"auth": _b64(PLANTED_PASSWORD)}}}),
                   AUTH_PREFIX + "unable to decode auth "
                   "field: must be formatted as base64(username:password)"),
        SecretCase("auths-missing", "kubernetes.io/dockerconfigjson",
                   _config({"credHelpers": {host: PLANTED_PASSWORD}}),
                   AUTH_PREFIX + f'auth for "{host}" not found in secret <ns>/creds'),
        SecretCase("other-host-only", "kubernetes.io/dockerconfigjson",
                   _config({"auths": {"ghcr.io": {"auth": good_auth}}}),
                   AUTH_PREFIX + f'auth for "{host}" not found in secret <ns>/creds'),
        SecretCase("userinfo-in-key", "kubernetes.io/dockerconfigjson",
                   _config({"auths": {f"https://robot:{PLANTED_PASSWORD}@": {"auth": good_auth}}}),
                   AUTH_PREFIX + "expected an HTTPS URL instead of 'https://<redacted>@' "
                   "(e.g. 'https://index.docker.io/v2/' or 'https://index.docker.io'), or the "
                   "same without 'https://' (e.g., 'index.docker.io/v2/' or 'index.docker.io')"),
        SecretCase("data-not-base64", "kubernetes.io/dockerconfigjson",
                   {".dockerconfigjson": "!!" + PLANTED_PASSWORD},
                   AUTH_PREFIX + "secret 'creds' key '.dockerconfigjson' is not valid base64",
                   refused=400),
        SecretCase("data-not-string", "kubernetes.io/dockerconfigjson",
                   {".dockerconfigjson": 7},
                   AUTH_PREFIX + "secret 'creds' key '.dockerconfigjson' is not a base64 string",
                   refused=400),
        SecretCase("opaque", "Opaque", _config({"auths": {host: {"auth": good_auth}}}),
                   AUTH_PREFIX + 'unknown secret type "Opaque"'),
        # Both keys: an API server refuses a kubernetes.io/tls Secret without either.
        SecretCase("tls-type", "kubernetes.io/tls", {"tls.crt": _b64(PLANTED_PASSWORD),
                                                     "tls.key": _b64(PLANTED_PASSWORD)},
                   AUTH_PREFIX + 'unknown secret type "kubernetes.io/tls"'),
    )


MISSING_DATA_KEY = SecretCase(
    "data-key-missing", "kubernetes.io/dockerconfigjson", {"config.json": _b64("{}")},
    "", planted=(), refused=422)
"""A dockerconfigjson Secret without ``.dockerconfigjson``: the message must name the
Secret and the missing key, not report a JSON syntax error."""


@dataclass(frozen=True, slots=True)
class PolicyCase:
    """An ImagePolicy ``spec.policy`` (and ``filterTags``) and the outcome it must reach."""

    id: str
    policy: dict[str, Any] | None
    reason: str
    message: str
    stalled: bool
    filter_tags: dict[str, str] | None = None


POLICY_TAGS: tuple[str, ...] = ("1.0.0", "1.1.0", "2.0.0-rc.1")
"""The tags the repository of the policy cases holds."""

POLICY_CASES: tuple[PolicyCase, ...] = (
    PolicyCase("range-star-dash-star", {"semver": {"range": "*-*"}}, "InvalidPolicy",
               "invalid policy: improper constraint: *-*", stalled=True),
    PolicyCase("range-letter", {"semver": {"range": "a"}}, "InvalidPolicy",
               "invalid policy: improper constraint: a", stalled=True),
    PolicyCase("range-empty", {"semver": {"range": ""}}, "InvalidPolicy",
               "invalid policy: improper constraint: ", stalled=True),
    PolicyCase("no-choice", {}, "InvalidPolicy",
               "invalid policy: given ImagePolicyChoice object is invalid", stalled=True),
    PolicyCase("filter-unclosed-group", {"semver": {"range": ">=0.x"}}, "InvalidPolicy",
               "failed to filter tags: invalid regular expression pattern '^v(.*': "
               "error parsing regexp: missing closing ): `^v(.*`", stalled=True,
               filter_tags={"pattern": "^v(.*", "extract": "$1"}),
    PolicyCase("extract-missing-group", {"numerical": {"order": "asc"}}, "Failure",
               "failed to parse invalid numeric value ''", stalled=False,
               filter_tags={"pattern": "^([0-9]+)", "extract": "$7$nosuchgroup"}),
    PolicyCase("numerical-over-semver-tags", {"numerical": {"order": "asc"}}, "Failure",
               "failed to parse invalid numeric value '", stalled=False),
    PolicyCase("range-matches-nothing", {"semver": {"range": ">=9.0.0"}}, "Failure",
               "unable to determine latest version from provided list", stalled=False),
    PolicyCase("filter-matches-nothing", {"alphabetical": {"order": "asc"}}, "Failure",
               "version list argument cannot be empty", stalled=False,
               filter_tags={"pattern": "^nothing-", "extract": ""}),
)
"""Policy cases over ``POLICY_TAGS``. A ``message`` ending in ``'`` is a prefix (which
non-numeric tag is named first depends on the stored order); others are exact."""

INVALID_ORDER_MESSAGE = ("invalid policy: invalid order argument provided: 'SIDEWAYS', "
                         "must be one of: ASC, DESC")
"""Contract §1.4: the controller upper-cases the order and rejects anything else."""
