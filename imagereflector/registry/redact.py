"""The one redaction step every registry message passes before it leaves this package.

A registry (or its token service) may echo anything back: a password in an error body,
a bearer token in a ``Link`` query, a refresh token in a redirect URL, bytes that are
not text at all. ``scrub`` turns any such text into a line that is safe to put in a
condition, an event, a log line or the CLI's output:

* every credential value known for the call is replaced, also in the forms a server
  would echo it in: percent-encoded, JSON-escaped and base64 (``user:password`` in base64
  is itself one of the call's secrets);
* URLs lose userinfo, fragment and query; the one query kept is the client's own page
  size (``?n=1000``), which says which request failed and carries nothing of the
  registry's;
* control characters (C0, C1, ``U+2028``/``U+2029``) become spaces and lone surrogates
  become ``U+FFFD``, so a message is one line that every encoder accepts and no server
  text can forge a second line of output;
* the result is at most ``MAX_MESSAGE_CHARS`` long.

``RegistryClient`` applies it to every error it raises (``scrub_error``), with the
secrets of that call, so no code path has to remember to.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, quote_plus

from imagereflector.registry.errors import REDACTED, RegistryError

MAX_MESSAGE_CHARS: Final = 1024
_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,15}://[^\s<>\"'\\]*")
_OWN_QUERY: Final = re.compile(r"n=[0-9]{1,7}")
_UNPRINTABLE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def variants(secret: str) -> set[str]:
    """``secret`` and the encodings a server could echo it back in."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    raw = secret.encode("utf-8", "surrogatepass")
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        forms.update((text, text.rstrip("=")))
    return {form for form in forms if form}


def _without_secrets(text: str, secrets: Iterable[str]) -> str:
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= variants(secret)
    # Longest first, so a secret that contains another is removed whole.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def _clean_url(match: re.Match[str]) -> str:
    url = match.group(0)
    # Punctuation that ends a sentence is not part of the URL ("GET <url>: denied").
    trimmed = url.rstrip(":;,.)]")
    url, tail = trimmed, url[len(trimmed):]
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    authority = authority.rsplit("@", 1)[-1]
    path, _, query = path.partition("?")
    query = query.split("#", 1)[0]
    path = path.split("#", 1)[0]
    kept = f"?{query}" if _OWN_QUERY.fullmatch(query) else ""
    return f"{scheme}://{authority}{slash}{path}{kept}{tail}"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` as one safe line: no known secret, no URL query or userinfo, no control
    characters or lone surrogates, at most ``MAX_MESSAGE_CHARS`` characters."""
    text = _without_secrets(text, secrets)
    text = _URL.sub(_clean_url, text)
    text = _SURROGATE.sub("\ufffd", _UNPRINTABLE.sub(" ", text))
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def scrub_error(err: RegistryError, secrets: Iterable[str]) -> RegistryError:
    """``err`` with its message scrubbed (the same object: type, status and codes kept)."""
    err.message = scrub(err.message, secrets)
    err.args = (err.message,)
    return err
