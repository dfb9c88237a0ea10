"""The controller caps glibc's malloc arenas, unless the operator chose a number."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imagereflector.app.malloc import cap_malloc_arenas

PROBE = ("from imagereflector.app.malloc import cap_malloc_arenas; "
         "print(cap_malloc_arenas())")


def probe(env: dict[str, str]) -> str:
    # A child process: the cap is process-wide and must come before any thread.
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def test_capped_on_glibc_linux() -> None:
    assert sys.platform.startswith("linux")
    assert probe({"PATH": "/usr/bin:/bin"}) == "True"


def test_the_operators_setting_wins() -> None:
    assert probe({"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "8"}) == "False"


def test_elsewhere_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cap_malloc_arenas() is False
