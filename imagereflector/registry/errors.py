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
from dataclasses import dataclass
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


class TLSError(RegistryError):
    """TLS failed: the material cannot be loaded, or the handshake with the registry failed."""


class CertificateError(TLSError):
    """The registry's certificate is not trusted (unknown CA, wrong name, expired)."""


@dataclass(frozen=True, slots=True)
class RegistryErrorDetail:
    """One entry of the distribution error envelope ``{"errors": [{code, message}]}``."""

    code: str
    message: str


class _NotJSON(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
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
        document = _loads(body)
    except _NotJSON:
        return ()
    if not isinstance(document, dict):
        return ()
    entries = document.get("errors")
    if not isinstance(entries, list):
        # Token services answer in OAuth2 shape: {"error": "...", "error_description": "..."}.
        code = document.get("error")
        if isinstance(code, str) and code:
            description = document.get("error_description")
            text = description if isinstance(description, str) else ""
            return (RegistryErrorDetail(code=code, message=text),)
        return ()
    details = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        code = entry.get("code")
        message = entry.get("message")
        details.append(
            RegistryErrorDetail(
                code=code if isinstance(code, str) else "UNKNOWN",
                message=message if isinstance(message, str) else "",
            )
        )
    return tuple(details)


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
    reason: str,
    body: bytes,
    retry_after: float | None = None,
) -> RegistryError:
    """The typed error for a non-success answer, with the registry's codes in the message.

    The message is raw material: the client scrubs it (``redact.scrub``) before raising.
    ``retry_after`` (seconds) is mentioned when the registry asked for a pause the client
    could not wait out.
    """
    details = parse_error_body(body)
    if details:
        described = "; ".join(
            f"{d.code}: {d.message}" if d.message else d.code for d in details
        )
    else:
        described = f"unexpected status code {status} {reason}".rstrip()
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
