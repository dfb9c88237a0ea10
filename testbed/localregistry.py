"""A local ``docker-registry`` for ``make run``'s demo, and a small image pusher.

Role: ``LocalRegistry(directory).up()`` runs Debian's ``docker-registry`` (CNCF
distribution) on 127.0.0.1 with filesystem storage, so the demo's ImageRepository has a
real registry to scan with no network and no account; ``push`` puts small, valid OCI
images under tags, the way ``docker push`` would, over the registry's HTTP API.

Invariants:

- It listens on 127.0.0.1 only, plain HTTP, without authentication: it holds nothing but
  the generated demo images, and the controller talks plain HTTP to loopback registries
  by itself (go-containerregistry's rule), so the sample needs no ``insecure`` flag.
- Everything it writes is under ``directory``: ``config.yml``, ``storage/``,
  ``registry.log``, ``registry.json`` (the port) and ``registry.pid`` (PID and start
  time, as ``testbed.cluster`` records its processes). It is stopped by that PID only.
- The port is chosen once and kept: a registry restarted after ``down`` (or a reboot)
  comes back on the same port when it is free, so image references in the cluster keep
  working; only when another program took the port is a new one chosen.
- ``up`` is idempotent: a live recorded registry that answers ``/v2/`` is reused.
- Every pushed tag gets its own image config (it names the tag), so each tag has its
  own manifest digest, as on a real registry. Pushing is synchronous (urllib) and needs
  neither ``tests/`` nor ``imagereflector``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from testbed.cluster import (
    LOOPBACK,
    ProcessRecord,
    die_with_parent,
    free_port,
    process_record,
    stop_process,
)

REGISTRY_PROGRAM = "docker-registry"
DEBIAN_PACKAGE = "docker-registry"
START_TIMEOUT_S = 15.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# The registry is ours and on loopback: never send its requests through a proxy the
# environment names (urllib would honour http_proxy otherwise).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RegistryError(RuntimeError):
    """The registry could not be started, or a push step got an unexpected answer."""


def find_program() -> str | None:
    """The ``docker-registry`` program: on PATH, else where Debian installs it."""
    found = shutil.which(REGISTRY_PROGRAM)
    if found:
        return found
    candidate = f"/usr/bin/{REGISTRY_PROGRAM}"
    return candidate if os.access(candidate, os.X_OK) else None


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class LocalRegistry:
    """One ``docker-registry`` with all its files in ``directory``."""

    def __init__(self, directory: Path, *, tie_to_parent: bool = False) -> None:
        self.directory = directory.resolve()
        # True in tests (the registry dies with the test process); False for `make run`,
        # whose registry must outlive the command, like its cluster.
        self.tie_to_parent = tie_to_parent

    # paths and recorded state

    @property
    def pid_file(self) -> Path:
        return self.directory / "registry.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "registry.log"

    def record(self) -> ProcessRecord | None:
        return ProcessRecord.load(self.pid_file)

    def recorded_port(self) -> int | None:
        try:
            port = json.loads((self.directory / "registry.json").read_text())["port"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return port if isinstance(port, int) else None

    @property
    def port(self) -> int:
        port = self.recorded_port()
        if port is None:
            raise RegistryError(f"no registry recorded in {self.directory}")
        return port

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of an image reference."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    # lifecycle

    def is_up(self) -> bool:
        """The recorded process is ours and alive, and ``/v2/`` answers 200."""
        record = self.record()
        if record is None or not record.alive() or self.recorded_port() is None:
            return False
        try:
            return self._get("/v2/", timeout=2.0).status == 200
        except (OSError, RegistryError):
            return False

    def up(self) -> LocalRegistry:
        """Start the registry, or reuse the running one; return ``self`` when it answers."""
        if self.is_up():
            return self
        self.down()
        program = find_program()
        if program is None:
            raise RegistryError(
                f"`{REGISTRY_PROGRAM}` is not installed: install the Debian package "
                f"{DEBIAN_PACKAGE} (`make debs` does)")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "storage").mkdir(exist_ok=True)
        port = self.recorded_port()
        last = ""
        for _attempt in range(3):
            if port is None or not _port_free(port):
                port = free_port()
            self._write_config(port)
            record = self._spawn(program)
            if self._wait_ready(record):
                return self
            last = self._log_tail()
            stop_process(record)
            self.pid_file.unlink(missing_ok=True)
            if "address already in use" not in last:
                break
            port = None  # taken between the check and the bind: choose another
        raise RegistryError(f"docker-registry did not start: {last}")

    def down(self) -> None:
        """Stop the recorded registry by PID; keep its storage and port."""
        record = self.record()
        if record is not None:
            stop_process(record)
        self.pid_file.unlink(missing_ok=True)

    def _write_config(self, port: int) -> None:
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.directory / "storage")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": f"{LOOPBACK}:{port}",
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        # JSON is YAML; the registry reads either.
        (self.directory / "config.yml").write_text(json.dumps(config, indent=2) + "\n")
        (self.directory / "registry.json").write_text(json.dumps({"port": port}) + "\n")

    def _spawn(self, program: str) -> ProcessRecord:
        # REGISTRY_* variables override the config file: none may leak in from the host.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [program, "serve", str(self.directory / "config.yml")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=env,
                # Its own session: Ctrl-C at `make run` stops the controller, not this.
                start_new_session=True,
                preexec_fn=die_with_parent if self.tie_to_parent else None,
            )
        record = process_record(REGISTRY_PROGRAM, proc.pid)
        if record is None:
            raise RegistryError(f"docker-registry exited at once: {self._log_tail()}")
        self.pid_file.write_text(record.to_json() + "\n")
        return record

    def _wait_ready(self, record: ProcessRecord) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not record.alive():
                return False
            try:
                if self._get("/v2/", timeout=1.0).status == 200:
                    return True
            except (OSError, RegistryError):
                pass
            time.sleep(0.05)
        return False

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # the registry API

    def tags(self, repository: str) -> list[str]:
        """The tags of ``repository``; empty when it does not exist yet."""
        answer = self._get(f"/v2/{repository}/tags/list?n=1000")
        if answer.status == 404:
            return []
        _expect(answer, 200, "list tags")
        found = json.loads(answer.body).get("tags") or []
        return [str(tag) for tag in found]

    def push(self, repository: str, tags: Iterable[str]) -> dict[str, str]:
        """Push a small image under each tag; return tag -> manifest digest."""
        layer = _layer()
        self._put_blob(repository, layer)
        digests: dict[str, str] = {}
        for tag in tags:
            config = _config(repository, tag)
            self._put_blob(repository, config)
            manifest = _manifest(config, layer)
            answer = self._send("PUT", f"/v2/{repository}/manifests/{tag}", manifest,
                                {"Content-Type": OCI_MANIFEST})
            _expect(answer, 201, f"put manifest {repository}:{tag}")
            digests[tag] = _digest(manifest)
        return digests

    def _put_blob(self, repository: str, data: bytes) -> None:
        digest = _digest(data)
        if self._send("HEAD", f"/v2/{repository}/blobs/{digest}").status == 200:
            return
        start = self._send("POST", f"/v2/{repository}/blobs/uploads/", b"")
        _expect(start, 202, "start blob upload")
        location = urllib.parse.urljoin(self.base_url + "/", start.headers["location"])
        separator = "&" if "?" in location else "?"
        done = self._send(
            "PUT", f"{location}{separator}{urllib.parse.urlencode({'digest': digest})}", data,
            {"Content-Type": "application/octet-stream"})
        _expect(done, 201, "finish blob upload")

    def _get(self, path: str, *, timeout: float = 30.0) -> _Answer:
        return self._send("GET", path, timeout=timeout)

    def _send(self, method: str, path_or_url: str, data: bytes | None = None,
              headers: dict[str, str] | None = None, *, timeout: float = 30.0) -> _Answer:
        url = urllib.parse.urljoin(self.base_url + "/", path_or_url)
        if not url.startswith(self.base_url + "/"):
            raise RegistryError(f"refusing to follow {url!r} away from {self.base_url}")
        request = urllib.request.Request(  # noqa: S310 (http to our own loopback registry)
            url, data=data, method=method, headers=headers or {})
        try:
            with _OPENER.open(request, timeout=timeout) as resp:
                return _Answer(resp.status, _lower(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                return _Answer(exc.code, _lower(exc.headers.items()), exc.read())


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {key.lower(): value for key, value in items}


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _expect(answer: _Answer, status: int, what: str) -> None:
    if answer.status != status:
        body = answer.body[:300].decode(errors="replace")
        raise RegistryError(f"{what}: HTTP {answer.status}: {body}")


# --- image content -------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        payload = b"imagereflector demo layer\n"
        info = tarfile.TarInfo("demo.txt")
        info.size = len(payload)
        info.mtime = 0  # byte-for-byte reproducible: one shared layer blob
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _layer() -> bytes:
    return gzip.compress(_layer_tar(), mtime=0)


def _config(repository: str, tag: str) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.title": repository,
                              "org.opencontainers.image.version": tag}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(_layer_tar())]},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _manifest(config: bytes, layer: bytes) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
