"""Typed failures of the registry client, and how a registry's error body becomes text.

Callers classify outcomes by exception type (``AuthError`` → authentication failed,
``NotFoundError`` → the repository does not exist, ``RegistryUnavailable`` → try again
later), never by message text. The message of every error is what follows
``scan failed: `` in a Ready condition, so it is one line, names the request
(``GET https://host/v2/repo/tags/list?n=1000``) and the registry's own error code and
message when it sent one.

Invariant: no message ever carries a secret. URLs are built by the client without
userinfo, and text that comes from a server (which could echo a header or a refresh
token back) passes through ``redact`` with the secrets of the call before it is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

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


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each non-empty secret in ``text``.

    Longer secrets go first so a secret that contains another is removed whole.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def parse_error_body(body: bytes) -> tuple[RegistryErrorDetail, ...]:
    """The error entries of a distribution error body; empty when it is not one."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
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
    secrets: Iterable[str],
    retry_after: float | None = None,
) -> RegistryError:
    """The typed error for a non-success answer, with the registry's codes in the message.

    ``url`` must already be free of userinfo; ``body`` is redacted before use.
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
    message = f"{method} {url}: {_one_line(redact(described, secrets))}"
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
