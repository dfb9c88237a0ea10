"""The real OCI registry (CNCF distribution 2.8.2) as a test component.

``start_registry`` runs ``/usr/bin/docker-registry`` on a free 127.0.0.1 port with
filesystem storage (on tmpfs when ``/dev/shm`` exists, linked from the test's tmp dir
and removed by ``stop``; else in the tmp dir), optionally behind htpasswd Basic auth,
Bearer token auth (see ``tokenserver``), TLS or mutual TLS. ``RegistryProcess``
fills it with tags two ways:

* ``push_tags`` / ``repush`` push real OCI images over the HTTP API with a small
  client of its own (it answers Basic and Bearer challenges itself), so the
  registry computes every digest and each tag has its own manifest.
* ``write_tags`` writes the filesystem driver's layout directly: about ten times
  faster, the way to seed 10k+ tags. All tags written in one call share a manifest.

Invariants:
* Nothing binds outside loopback; the process is started with a scrubbed
  environment (no ``REGISTRY_*`` overrides leak in from the host).
* ``stop`` always reaps the process (terminate, then kill), and is idempotent.
* This module never imports ``imagereflector``: it is the independent party the
  registry client is tested against.
* Error messages carry status codes and registry error bodies, never credentials.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

import aiohttp
import bcrypt
from aiohttp import web

from tests.fakes.ports import process_listens

if TYPE_CHECKING:
    from tests.fakes.certs import CertAuthority, KeyPair
    from tests.fakes.tokenserver import TokenServer

TEST_CREDS = ("testuser", "testpass")
"""The one user every authenticating fixture accepts."""

REGISTRY_BINARY = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

_TMPFS = Path("/dev/shm")
_START_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)


class RegistryStartError(RuntimeError):
    """The registry process exited or did not listen in time; the message has its log."""


class RegistryPushError(RuntimeError):
    """A push step got an unexpected answer from the registry or its token server."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``host`` (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LoopbackApp:
    """An aiohttp application served on a loopback address until ``close``.

    Shared plumbing of the token server and the fronts. ``shutdown_timeout`` is short
    because fault scripts leave handlers hanging on purpose; close cancels them.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        bind: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not bind.startswith("127."):
            raise ValueError("test servers bind to loopback only")
        self._app = app
        self._bind = bind
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def host(self) -> str:
        """``IP:PORT`` as clients put it in URLs."""
        return f"{self._bind}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL with the right scheme, no trailing slash."""
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self.host}"

    async def start(self) -> None:
        """Bind an ephemeral port and start serving."""
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self._bind, 0, ssl_context=self._ssl)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop serving; in-flight handlers are cancelled after a short grace."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


class RegistryProcess:
    """A running ``docker-registry`` and what a test needs to reach and seed it.

    ``ca`` and ``client`` are set by TLS fixtures: the CA that signed the server
    certificate, and a client key pair the registry accepts under mutual TLS.
    """

    def __init__(
        self,
        *,
        process: subprocess.Popen[bytes],
        port: int,
        scheme: str,
        root: Path,
        workdir: Path,
        log_file: Path,
        ca: CertAuthority | None = None,
        client: KeyPair | None = None,
        scratch: Path | None = None,
    ) -> None:
        self.process = process
        self.port = port
        self.scheme = scheme
        self.root = root
        self.workdir = workdir
        self.log_file = log_file
        self.ca = ca
        self.client = client
        self._scratch = scratch

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT``."""
        return f"{self.scheme}://{self.host}"

    def ref(self, repo: str) -> str:
        """The image reference ``127.0.0.1:PORT/repo``."""
        return f"{self.host}/{repo}"

    def log(self) -> str:
        """What the registry wrote to stdout/stderr so far (warnings and errors only)."""
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        """Terminate the process (kill after 5 s), reap it, drop tmpfs storage. Idempotent."""
        _reap(self.process)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def write_tags(self, repo: str, tags: Iterable[str]) -> None:
        """Write ``tags`` into the storage layout directly; the running registry serves them.

        All tags get the same manifest (one config blob, one layer per call). Existing
        tags are pointed at that manifest.
        """
        layer, _ = _layer()
        config = _config({"repo": repo, "nonce": secrets.token_hex(8)})
        manifest = _manifest(config, layer)
        v2 = self.root / "docker" / "registry" / "v2"
        repo_dir = v2 / "repositories" / repo
        for blob in (layer, config, manifest):
            _write_blob(v2, blob)
        for blob in (layer, config):
            _write_link(repo_dir / "_layers" / "sha256" / _hex(blob) / "link", blob)
        manifests = repo_dir / "_manifests"
        _write_link(manifests / "revisions" / "sha256" / _hex(manifest) / "link", manifest)
        link = _sha(manifest).encode()
        # Plain os calls on str paths: this loop is the whole cost of seeding 10k+ tags.
        tags_dir = str(manifests / "tags")
        index_tail = f"index/sha256/{_hex(manifest)}"
        for tag in tags:
            index = f"{tags_dir}/{tag}/{index_tail}"
            os.makedirs(index, exist_ok=True)
            with open(f"{index}/link", "wb") as f:
                f.write(link)
            current = f"{tags_dir}/{tag}/current"
            os.makedirs(current, exist_ok=True)
            with open(f"{current}/link", "wb") as f:
                f.write(link)

    async def push_tags(
        self,
        repo: str,
        tags: Iterable[str],
        *,
        auth: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> dict[str, str]:
        """Push a small unique OCI image under each tag; return tag -> manifest digest.

        ``ssl_context`` defaults to one trusting ``self.ca`` (and presenting
        ``self.client``) when those are set. It is also used for an https token realm.
        """
        digests: dict[str, str] = {}
        async with _PushClient(
            self, auth=auth, ssl_context=ssl_context or self.ssl_context()
        ) as client:
            for tag in tags:
                digests[tag] = await client.push_image(repo, tag)
        return digests

    async def repush(
        self,
        repo: str,
        tag: str,
        *,
        auth: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> str:
        """Push new content under an existing ``tag``; return the new manifest digest."""
        digests = await self.push_tags(repo, [tag], auth=auth, ssl_context=ssl_context)
        return digests[tag]

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting ``ca`` and presenting ``client``; None for plain http."""
        if self.ca is None:
            return None
        return self.ca.ssl_context(client=self.client)


async def start_registry(
    tmp: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    token: TokenServer | None = None,
    tls: KeyPair | None = None,
    client_ca: Path | None = None,
    ca: CertAuthority | None = None,
    client: KeyPair | None = None,
) -> RegistryProcess:
    """Start a registry under a fresh dir inside ``tmp`` and wait until its port answers.

    Async so the wait does not block the loop other servers of the test run on.
    ``htpasswd`` adds Basic auth for that one user (bcrypt entry); ``token`` adds Bearer
    auth against that (started) token server; ``tls`` serves https with that key pair;
    ``client_ca`` (needs ``tls``) requires client certificates signed by that CA.
    ``ca``/``client`` are only recorded on the result for the test's own clients.
    Raises ``RegistryStartError`` with the registry's log if it dies or is not up in 10 s.
    The caller owns ``stop()``.
    """
    if htpasswd is not None and token is not None:
        raise ValueError("distribution supports one auth method at a time")
    if client_ca is not None and tls is None:
        raise ValueError("client_ca needs tls")
    workdir, root, auth = _prepare(tmp, htpasswd=htpasswd, token=token)
    last_error = ""
    for _ in range(_PORT_ATTEMPTS):
        reg = _launch(workdir, root, auth, tls=tls, client_ca=client_ca, ca=ca, client=client)
        try:
            if await _wait_listening(reg):
                return reg
        except BaseException:
            reg.stop()
            raise
        last_error = reg.log()
        _reap(reg.process)
        if "address already in use" not in last_error:
            break
    if root.parent == _TMPFS:
        shutil.rmtree(root, ignore_errors=True)
    raise RegistryStartError(f"docker-registry exited early:\n{last_error}")


def _prepare(
    tmp: Path, *, htpasswd: tuple[str, str] | None, token: TokenServer | None
) -> tuple[Path, Path, dict[str, Any]]:
    """Make the work and storage dirs and the ``auth`` config section."""
    tmp.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="registry-", dir=tmp))
    root = _storage_dir(workdir)
    if htpasswd is not None:
        user, password = htpasswd
        # Cost 4 is the minimum Go's bcrypt accepts: keeps each auth check fast.
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        htfile = workdir / "htpasswd"
        htfile.write_text(f"{user}:{hashed}\n")
        return workdir, root, {"htpasswd": {"realm": "test-registry", "path": str(htfile)}}
    if token is not None:
        token_auth = {
            "realm": token.realm,
            "service": token.service,
            "issuer": token.issuer,
            "rootcertbundle": str(token.rootcert_file),
        }
        return workdir, root, {"token": token_auth}
    return workdir, root, {}


def _launch(
    workdir: Path,
    root: Path,
    auth: dict[str, Any],
    *,
    tls: KeyPair | None,
    client_ca: Path | None,
    ca: CertAuthority | None,
    client: KeyPair | None,
) -> RegistryProcess:
    """Write the config for a fresh port and spawn the registry on it."""
    port = free_port()
    http: dict[str, Any] = {
        "addr": f"127.0.0.1:{port}",
        "secret": secrets.token_hex(16),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert_file), "key": str(tls.key_file)}
        if client_ca is not None:
            http["tls"]["clientcas"] = [str(client_ca)]
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth:
        config["auth"] = auth
    config_file = workdir / "config.yml"
    # JSON is YAML, and needs no YAML writer.
    config_file.write_text(json.dumps(config, indent=2))
    log_file = workdir / f"registry-{port}.log"
    return RegistryProcess(
        process=_spawn(config_file, log_file),
        port=port,
        scheme="https" if tls is not None else "http",
        root=root,
        workdir=workdir,
        log_file=log_file,
        ca=ca,
        client=client,
        scratch=root if root.parent == _TMPFS else None,
    )


def _storage_dir(workdir: Path) -> Path:
    """Storage on tmpfs when there is one: seeding 10k tags is ~3x faster than on ext4.

    A symlink in ``workdir`` points at it, so a failed test's files are still findable.
    """
    if _TMPFS.is_dir() and os.access(_TMPFS, os.W_OK):
        root = Path(tempfile.mkdtemp(prefix="irc-registry-", dir=_TMPFS))
        (workdir / "storage").symlink_to(root)
        return root
    root = workdir / "storage"
    root.mkdir()
    return root


def _spawn(config_file: Path, log_file: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with log_file.open("wb") as log:
        return subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def _wait_listening(reg: RegistryProcess) -> bool:
    """True once the process listens on its port; False if it exited first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT
    while loop.time() < deadline:
        if reg.process.poll() is not None:
            return False
        # Not a connect: another worker may have bound the port meanwhile (see ports).
        if process_listens(reg.process.pid, reg.port):
            return True
        await asyncio.sleep(0.01)
    raise RegistryStartError(f"docker-registry not listening after {_START_TIMEOUT}s:\n{reg.log()}")


# --- image content -------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache
def _layer() -> tuple[bytes, str]:
    """A tiny gzip tar (byte-for-byte reproducible) and its diff ID."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        payload = b"imagereflector test layer\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), _sha(raw)


def _config(labels: Mapping[str, str]) -> bytes:
    _, diff_id = _layer()
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": dict(labels)},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _manifest(config: bytes, layer: bytes) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": _sha(layer), "size": len(layer)}],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _write_blob(v2: Path, data: bytes) -> None:
    digest = _hex(data)
    path = v2 / "blobs" / "sha256" / digest[:2] / digest / "data"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _write_link(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_sha(data).encode())


# --- a minimal push client -----------------------------------------------------------

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class _PushClient:
    """Just enough of the distribution API to push images, with its own auth handling.

    On a 401 it reads ``WWW-Authenticate``: Basic gets the credentials, Bearer gets a
    token from the realm (with Basic credentials if any), cached per challenge scope.
    """

    def __init__(
        self,
        reg: RegistryProcess,
        *,
        auth: tuple[str, str] | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._reg = reg
        self._auth = auth
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._authorization: str | None = None
        self._tokens: dict[str, str] = {}
        self._pushed_blobs: set[tuple[str, str]] = set()

    async def __aenter__(self) -> _PushClient:
        self._session = aiohttp.ClientSession(timeout=_HTTP_TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def push_image(self, repo: str, tag: str) -> str:
        layer, _ = _layer()
        config = _config({"repo": repo, "tag": tag, "nonce": secrets.token_hex(8)})
        await self._push_blob(repo, layer)
        await self._push_blob(repo, config)
        manifest = _manifest(config, layer)
        resp = await self._request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        _expect(resp, 201, "put manifest")
        digest = _sha(manifest)
        served = resp.headers.get("Docker-Content-Digest", digest)
        if served != digest:
            raise RegistryPushError(f"registry computed digest {served}, expected {digest}")
        return digest

    async def _push_blob(self, repo: str, data: bytes) -> None:
        digest = _sha(data)
        if (repo, digest) in self._pushed_blobs:
            return
        head = await self._request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if head.status != 200:
            start = await self._request("POST", f"/v2/{repo}/blobs/uploads/")
            _expect(start, 202, "start upload")
            location = urljoin(self._reg.base_url + "/", start.headers["Location"])
            sep = "&" if "?" in location else "?"
            done = await self._request(
                "PUT",
                f"{location}{sep}{urlencode({'digest': digest})}",
                data=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            _expect(done, 201, "finish upload")
        self._pushed_blobs.add((repo, digest))

    async def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Response:
        assert self._session is not None, "use as an async context manager"
        url = urljoin(self._reg.base_url + "/", path_or_url)
        resp = await self._send(method, url, data=data, headers=headers)
        if resp.status == 401:
            challenge = resp.headers.get("WWW-Authenticate", "")
            self._authorization = await self._answer(challenge)
            resp = await self._send(method, url, data=data, headers=headers)
        return resp

    async def _send(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> _Response:
        assert self._session is not None
        all_headers = dict(headers or {})
        if self._authorization is not None:
            all_headers["Authorization"] = self._authorization
        async with self._session.request(
            method, url, data=data, headers=all_headers, ssl=self._ssl
        ) as resp:
            body = await resp.read()
            return _Response(resp.status, dict(resp.headers), body)

    async def _answer(self, challenge: str) -> str:
        scheme, _, rest = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        if scheme.lower() == "basic":
            if self._auth is None:
                raise RegistryPushError("registry wants Basic auth and no credentials were given")
            return _basic(self._auth)
        if scheme.lower() != "bearer" or "realm" not in params:
            raise RegistryPushError(f"unsupported auth challenge scheme {scheme!r}")
        scope = params.get("scope", "")
        if scope not in self._tokens:
            self._tokens[scope] = await self._fetch_token(params)
        return "Bearer " + self._tokens[scope]

    async def _fetch_token(self, params: Mapping[str, str]) -> str:
        assert self._session is not None
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        headers = {"Authorization": _basic(self._auth)} if self._auth is not None else {}
        async with self._session.get(
            params["realm"], params=query, headers=headers, ssl=self._ssl
        ) as resp:
            if resp.status != 200:
                raise RegistryPushError(f"token realm answered {resp.status}")
            doc = await resp.json()
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str):
            raise RegistryPushError("token realm answered without a token")
        return token


def _basic(creds: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(creds).encode()).decode()


def _expect(resp: _Response, status: int, what: str) -> None:
    if resp.status != status:
        raise RegistryPushError(
            f"{what}: HTTP {resp.status}: {resp.body[:300].decode(errors='replace')}"
        )
