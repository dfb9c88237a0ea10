"""A real tinyproxy on loopback, with or without Basic auth, and its connection log.

Used to prove that an object's registry traffic goes through its ``proxySecretRef``
proxy: tinyproxy logs every request and CONNECT it handles.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from imagereflector.registry.types import ProxyConfig
from tests.fakes.ports import process_listens
from tests.fakes.registry import free_port

PROXY_USER = "proxyuser"


@dataclass
class Proxy:
    """A running tinyproxy; ``password`` is empty when it wants no credentials."""

    port: int
    password: str
    log_file: Path

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, *, password: str | None = None) -> ProxyConfig:
        """Client settings for this proxy (optionally with another password)."""
        if not self.password and password is None:
            return ProxyConfig(address=self.address)
        return ProxyConfig(address=self.address, username=PROXY_USER,
                           password=self.password if password is None else password)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def _configure(directory: Path, *, auth: bool) -> tuple[Proxy, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = "proxy-" + secrets.token_hex(8) if auth else ""
    log_file = directory / "tinyproxy.log"
    config = directory / "tinyproxy.conf"
    basic = f"BasicAuth {PROXY_USER} {password}\n" if auth else ""
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\n{basic}"
        f"LogLevel Info\nLogFile \"{log_file}\"\nMaxClients 20\nDisableViaHeader Yes\n")
    return Proxy(port=port, password=password, log_file=log_file), config


@contextlib.asynccontextmanager
async def running_tinyproxy(directory: Path, *, auth: bool = True) -> AsyncIterator[Proxy]:
    """Start tinyproxy in ``directory``; fails (never skips) when it cannot start."""
    proxy, config = _configure(directory, auth=auth)
    port = proxy.port
    process = await asyncio.create_subprocess_exec(
        "tinyproxy", "-d", "-c", str(config), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(200):  # until it listens; the process start is all we wait for
            if process.returncode is not None:
                raise RuntimeError(f"tinyproxy exited with {process.returncode} at start")
            # The process itself, not whoever holds the port (see ports).
            if process_listens(process.pid, port):
                break
            await asyncio.sleep(0.025)
        else:
            raise RuntimeError("tinyproxy did not start listening")
        yield proxy
    finally:
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
