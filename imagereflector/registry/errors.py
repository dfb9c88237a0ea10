"""Typed failures of the registry client, and how a registry's error body becomes text.

Callers classify outcomes by exception type (``AuthError`` → authentication failed,
``NotFoundError`` → the repository does not exist, ``RegistryUnavailable`` → try again
later), never by message text. The message of every error is what follows
``scan failed: `` in a Ready condition, so it is one line, names the request
(``GET https://host/v2/repo/tags/list?n=1000``) and the registry's own error code and
message when it sent one.

Invariant: no message ever carries a secret. Every error the client raises passes
``redact.scrub`` with the secrets of the call before it leaves the package; the
messages built here are only ever the raw material for that step.

Registry bodies are decoded with ``decode_json``, which turns every way a body can fail
to be JSON (bad syntax, bad UTF-8, nesting deep enough to exhaust the recursion limit)
into ``InvalidResponseError``, never a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from typing import Any, Final

_MAX_DETAIL_CHARS: Final = 300
REDACTED: Final = "<redacted>"


class RegistryError(Exception):
    """Any failure to talk to a registry; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, codes: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.status = status
        self.codes = codes

    def __str__(self) -> str:
        return self.message


class AuthError(RegistryError):
    """The registry or its token service refused the credentials (401/403)."""


class NotFoundError(RegistryError):
    """The repository or manifest does not exist (404, usually ``NAME_UNKNOWN``)."""


class PaginationError(RegistryError):
    """Tag pagination did not end: a ``Link`` loop, too many pages, or a foreign link."""


class ResponseTooLargeError(RegistryError):
    """A response body exceeded its configured bound; reading stopped there."""


class ScanLimitError(RegistryError):
    """A scan passed a whole-scan bound (tags or bytes across all pages); it stopped there."""


class InvalidResponseError(RegistryError):
    """The registry answered with something that is not the documented shape."""


class RegistryUnavailable(RegistryError):
    """Network failures, timeouts, rate limiting or 5xx answers that outlived the retries."""


class RegistryTimeoutError(RegistryUnavailable):
    """The call's deadline passed before the registry answered."""


class CredentialSourceError(RegistryError):
    """Deferred credentials (a cloud login done when the registry asks) could not be had.

    The message is the credential source's own, reported as it is after ``scan failed: ``.
    """


class TLSError(RegistryError):
    """TLS failed: the material cannot be loaded, or the handshake with the registry failed."""


class CertificateError(TLSError):
    """The registry's certificate is not trusted (unknown CA, wrong name, expired)."""


@dataclass(frozen=True, slots=True)
class RegistryErrorDetail:
    """One entry of the distribution error envelope ``{"errors": [{code, message, detail}]}``.

    ``detail`` is the entry's ``detail`` rendered as Go's ``%v`` renders the decoded JSON
    (``map[name:app]``), or None when there is none, so messages read as Flux's do.
    """

    code: str
    message: str
    detail: str | None = None

    @property
    def text(self) -> str:
        """``CODE: message[; detail]``, go-containerregistry's wording."""
        shown = f"{self.code}: {self.message}"
        return shown if self.detail is None else f"{shown}; {self.detail}"


def go_value(value: Any) -> str:
    """``value`` (decoded JSON, numbers as float) as Go's ``fmt`` ``%v`` prints it."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return go_float(float(value))
    return str(value)


def go_float(number: float) -> str:
    """Go's shortest ``%v`` of a float64: ``%e`` form when the exponent is below -4 or at
    least 6 (``1.23456789e+08``, ``1e-05``), else plain (``100000``, ``1.5``)."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    sign, digits, exponent = Decimal(repr(number)).normalize().as_tuple()
    text = "".join(map(str, digits))
    assert isinstance(exponent, int)
    point = len(text) + exponent  # position of the decimal point in the digit string
    head = "-" if sign else ""
    power = point - 1
    if power < -4 or power >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{head}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{head}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{head}{text}{'0' * (point - len(text))}"
    return f"{head}{text[:point]}.{text[point:]}"


class _NotJSON(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _loads(body: bytes, *, go_numbers: bool = False) -> Any:
    try:
        # Go decodes every JSON number into a float64; so must a detail shown as Go shows it.
        return json.loads(body, parse_int=float) if go_numbers else json.loads(body)
    except RecursionError:
        # The C decoder gives up at the interpreter's recursion limit: nesting that deep is
        # never a registry document, and the decoder's memory is bounded by the body size.
        raise _NotJSON("nested too deeply") from None
    except ValueError:  # includes UnicodeDecodeError
        raise _NotJSON("not JSON") from None


def decode_json(body: bytes, *, what: str) -> Any:
    """The JSON document in ``body``, or ``InvalidResponseError("<what> is not JSON")``."""
    try:
        return _loads(body)
    except _NotJSON as err:
        raise InvalidResponseError(f"{what} is {err.why}") from None


def parse_error_body(body: bytes) -> tuple[RegistryErrorDetail, ...]:
    """The error entries of a distribution error body; empty when it is not one."""
    try:
        document = _loads(body, go_numbers=True)
    except _NotJSON:
        return ()
    entries = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return ()
    details = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        code, message = entry.get("code"), entry.get("message")
        detail = entry.get("detail")
        details.append(RegistryErrorDetail(
            code=code if isinstance(code, str) else "",
            message=message if isinstance(message, str) else "",
            detail=None if detail is None else go_value(detail)))
    return tuple(details)


# Go's http.StatusText where Python's phrase differs.
_GO_STATUS_TEXT: Final = {414: "Request URI Too Long", 418: "I'm a teapot"}


def status_text(status: int) -> str:
    """The standard reason phrase of ``status`` as Go names it ("" when unknown)."""
    if status in _GO_STATUS_TEXT:
        return _GO_STATUS_TEXT[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > _MAX_DETAIL_CHARS:
        return flat[: _MAX_DETAIL_CHARS - 3] + "..."
    return flat


def error_for_status(
    *,
    method: str,
    url: str,
    status: int,
    body: bytes,
    retry_after: float | None = None,
) -> RegistryError:
    """The typed error for a non-success answer, with the registry's codes in the message.

    The message is raw material: the client scrubs it (``redact.scrub``) before raising.
    ``retry_after`` (seconds) is mentioned when the registry asked for a pause the client
    could not wait out.
    """
    # Worded as go-containerregistry words it, so conditions read as Flux's do.
    details = parse_error_body(body)
    if len(details) == 1:
        described = details[0].text
    elif details:
        described = "multiple errors returned: " + "; ".join(d.text for d in details)
    else:
        described = f"unexpected status code {status} {status_text(status)}"
        if body:
            described += f": {body.decode('utf-8', 'replace')}"
        elif method == "HEAD":
            described += " (HEAD responses have no body, use GET for details)"
    message = f"{method} {url}: {_one_line(described)}"
    if retry_after is not None:
        message += f" (registry asks to retry after {retry_after:.0f}s)"
    codes = tuple(d.code for d in details)
    kind: type[RegistryError]
    if status in (401, 403):
        kind = AuthError
    elif status == 404:
        kind = NotFoundError
    elif status in (408, 429) or status >= 500:
        kind = RegistryUnavailable
    else:
        kind = RegistryError
    return kind(message, status=status, codes=codes)
