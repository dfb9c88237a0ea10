"""Running ``imagereflector scan`` in-process against hostile registries, and the planted
secrets whose every encoding must stay out of what it prints."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from pathlib import Path
from urllib.parse import quote, quote_plus

from imagereflector.cli import main

USERNAME = "robot"
# Characters that change under every encoding a server could echo a password back in.
PASSWORD = 'pw"&=?/+ :x9Q-planted'
IDENTITY_TOKEN = "refresh-7f3a9c1e-planted"
REGISTRY_TOKEN = "bearer-0b5e7d22-planted"
ISSUED_TOKEN = "issued-token-4c8d-planted"


def encodings(secret: str) -> set[str]:
    """Forms a registry could echo ``secret`` in."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1],
             base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return {form for form in forms if len(form) >= 6}


def basic_pair() -> str:
    """``base64(user:password)`` as a Basic header carries it."""
    return base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()


PLANTED: frozenset[str] = frozenset(
    encodings(PASSWORD) | encodings(IDENTITY_TOKEN) | encodings(REGISTRY_TOKEN)
    | encodings(ISSUED_TOKEN) | {basic_pair()})


def leaks(text: str) -> list[str]:
    """The planted values (in any encoding) found in ``text``."""
    return sorted(value for value in PLANTED if value in text)


def docker_config(path: Path, host: str, **fields: str) -> Path:
    """A docker config.json for ``host`` with the given auth fields."""
    path.write_text(json.dumps({"auths": {host: fields}}))
    return path


async def cli(*argv: str) -> tuple[int, str, str]:
    """``imagereflector`` in a thread, as a user runs it: (exit code, stdout, stderr).

    Any exception escaping ``main`` fails the test: a registry answer must never produce
    a traceback.
    """
    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exit_:
                code = int(exit_.code or 0)
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)
