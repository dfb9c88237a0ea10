"""Fixtures for cloud login tests: a moto server, clean cloud environments, a child runner.

Every test starts from an environment without any cloud configuration of the host
(``AWS_*``, ``AZURE_*``, ``IDENTITY_*``, ``GOOGLE_*``, ``GCE_*``, a private ``HOME``), so
nothing leaks in from the machine and nothing a test sets leaks out (monkeypatch
restores it).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.registry import free_port

REPO_ROOT = Path(__file__).resolve().parents[3]
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
_CLOUD_PREFIXES = ("AWS_", "AZURE_", "IDENTITY_", "MSI_", "GOOGLE_", "GCE_", "CLOUDSDK_")
_MOTO_START_TIMEOUT = 20.0


def clean_environ(home: Path) -> dict[str, str]:
    """``os.environ`` without cloud settings, with ``HOME`` (and gcloud's config) in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLOUD_PREFIXES)}
    env["HOME"] = str(home)
    env["CLOUDSDK_CONFIG"] = str(home / "gcloud")
    env["AWS_CONFIG_FILE"] = str(home / "aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(home / "aws-credentials")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's environment without cloud settings; returns the private ``HOME``."""
    home = tmp_path / "home"
    home.mkdir()
    wanted = clean_environ(home)
    for key in list(os.environ):
        if key not in wanted:
            monkeypatch.delenv(key)
    for key, value in wanted.items():
        monkeypatch.setenv(key, value)
    return home


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """A ``moto_server`` on loopback for the module; yields its base URL."""
    port = free_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed after the process is reaped
    proc = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + _MOTO_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def aws_env(clean_env: Path, moto: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """boto3 pointed at moto for ECR and STS, with no credentials yet; returns moto's URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto)
    return moto


@dataclass(frozen=True, slots=True)
class ChildRun:
    """What a child login process printed."""

    answer: dict[str, Any]
    stdout: str
    stderr: str


async def run_child(spec: Mapping[str, Any], *, env: Mapping[str, str]) -> ChildRun:
    """Run ``tests.credentials.providers.child`` with ``spec`` and exactly ``env``.

    Async, so the fakes and the registry this test serves keep answering meanwhile.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.credentials.providers.child",
        json.dumps(spec),
        cwd=REPO_ROOT,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    stdout, stderr = out.decode(), err.decode()
    if proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\n{stderr}")
    answer = json.loads(stdout.strip().splitlines()[-1])
    return ChildRun(answer=answer, stdout=stdout, stderr=stderr)
