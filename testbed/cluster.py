"""A real etcd + kube-apiserver on loopback, for tests, benchmarks and `make cluster`.

Role: ``Cluster(state_dir).up()`` starts etcd and kube-apiserver from the binaries
``testbed.build`` makes, with self-generated certificates, RBAC, service-account tokens
and an admin kubeconfig, and ``down()`` stops them. There is no kube-controller-manager,
scheduler or kubelet: objects are stored and served, never acted upon. What the missing
controllers would have done and tests rely on, the harness does itself:

- ``create_namespace`` also creates the namespace's ``default`` ServiceAccount (the
  service-account controller's job), and ``up`` does so for ``default``;
- ``delete_namespace`` deletes every namespaced object in it, clears finalizers of those
  left with a deletionTimestamp, and finalizes the namespace (the namespace controller's
  job); without that a deleted namespace stays ``Terminating`` forever and its objects
  remain visible to a controller watching all namespaces;
- nothing publishes the ``kube-root-ca.crt`` ConfigMap, runs garbage collection
  (``ownerReferences`` are not followed) or schedules Pods.

Invariants:

- Everything listens on 127.0.0.1 only: etcd's client and peer ports and the API
  server's secure port, on free ports chosen at start; etcd speaks TLS with client
  certificates, so only the API server can read it.
- Every process started is recorded in ``<state>/pids/<name>.pid`` with its start time
  (so a reused PID is never taken for ours) and stopped by that PID only: SIGTERM, then
  SIGKILL after a grace period.
- ``up`` is idempotent: when the recorded processes are alive and ``/readyz`` answers,
  they are reused; otherwise whatever is left is stopped, the state wiped and a fresh
  cluster started.
- The state directory holds only what this module writes (``pki/``, ``etcd/``,
  ``logs/``, ``pids/``, ``cluster.json``, ``kubeconfig``, ``kubeconfigs/``), and only
  those names are ever deleted from it.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed.pki import write_pki

LOOPBACK = "127.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service: first address of SERVICE_CIDR
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
STOP_GRACE_S = 10.0
READY_TIMEOUT_S = 120.0
# Only these entries of a state directory belong to the harness; `wipe` removes no other.
STATE_ENTRIES = ("pki", "etcd", "logs", "pids", "cluster.json", "kubeconfig", "kubeconfigs")
PROCESS_ORDER = ("etcd", "kube-apiserver")  # started in this order, stopped in reverse


class ClusterError(RuntimeError):
    """The cluster could not be started, or the API server refused a harness request."""


class ApiError(ClusterError):
    """An API request answered with an unexpected HTTP status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


# --- processes by PID -----------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRecord:
    """What ``<state>/pids/<name>.pid`` holds: enough to recognise our own process."""

    name: str
    pid: int
    start_time: int

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start_time

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "pid": self.pid, "start_time": self.start_time})

    @classmethod
    def load(cls, path: Path) -> ProcessRecord | None:
        try:
            raw = json.loads(path.read_text())
            return cls(str(raw["name"]), int(raw["pid"]), int(raw["start_time"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def process_record(name: str, pid: int) -> ProcessRecord | None:
    """The record of a process just started as ``pid``; None when it has already exited.

    /proc may lag a fresh fork by a moment, so this retries for up to a second.
    """
    for _ in range(100):
        started = _start_time(pid)
        if started is not None:
            return ProcessRecord(name, pid, started)
        time.sleep(0.01)
    return None


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(record: ProcessRecord, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM ``record``'s process, SIGKILL it after ``grace`` seconds; only if it is ours."""
    if not record.alive():
        _reap(record.pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not record.alive():
            return
        time.sleep(0.05)
    if record.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not record.alive():
            return
        time.sleep(0.05)
    raise ClusterError(f"{record.name} (pid {record.pid}) survived SIGKILL")


# Loaded in the parent: between fork and exec the child must not dlopen anything (a
# loader lock held by another thread at fork time would never be released there).
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A test session killed without teardown must not leave an API server running in a
    # temp dir nobody will ever `down`: the child is killed when its parent dies.
    # SIGKILL, not SIGTERM: both processes get it at once, and a kube-apiserver whose
    # etcd went away during its graceful shutdown was seen to wait for minutes.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _open_direct(request: urllib.request.Request | str, context: ssl.SSLContext, *,
                 timeout: float) -> Any:
    """``urlopen`` straight to our own loopback servers, never through a proxy named in the
    environment (a test may set a dead one on purpose, for the code it tests)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    return opener.open(request, timeout=timeout)


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# --- the cluster ----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """Where the running cluster listens (``<state>/cluster.json``)."""

    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    bin_dir: str

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver_port}"


class Cluster:
    """etcd + kube-apiserver from ``bin_dir``, with all state under ``state_dir``.

    ``kubeconfig`` is the admin kubeconfig (``system:masters`` by client certificate);
    ``service_account_kubeconfig`` mints one for a ServiceAccount through TokenRequest.
    """

    def __init__(
        self, state_dir: Path, bin_dir: Path | None = None, *, tie_to_parent: bool = False
    ) -> None:
        self.state_dir = state_dir.resolve()
        self._bin_dir = bin_dir
        # True for test sessions (the processes die with this Python process); False
        # for `make cluster`, whose cluster must outlive the command that started it.
        self.tie_to_parent = tie_to_parent
        self._ssl: ssl.SSLContext | None = None

    # paths

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            endpoints = self.endpoints()
            if endpoints is not None:
                return Path(endpoints.bin_dir)
            from testbed.build import bin_dir

            self._bin_dir = bin_dir("controlplane")
        return self._bin_dir

    def binary(self, name: str) -> Path:
        """A control-plane program (``kubectl``, ``flux``, ...) of this cluster's bin dir."""
        return self.bin_dir / name

    def endpoints(self) -> Endpoints | None:
        try:
            raw = json.loads((self.state_dir / "cluster.json").read_text())
            return Endpoints(**raw)
        except (OSError, ValueError, TypeError):
            return None

    @property
    def server(self) -> str:
        endpoints = self.endpoints()
        if endpoints is None:
            raise ClusterError(f"no cluster recorded in {self.state_dir}")
        return endpoints.server

    def records(self) -> dict[str, ProcessRecord]:
        """The recorded processes, alive or not."""
        found: dict[str, ProcessRecord] = {}
        for name in PROCESS_ORDER:
            record = ProcessRecord.load(self.state_dir / "pids" / f"{name}.pid")
            if record is not None:
                found[name] = record
        return found

    def pids(self) -> dict[str, int]:
        return {name: record.pid for name, record in self.records().items()}

    # lifecycle

    def is_up(self) -> bool:
        """All recorded processes are ours and alive, and ``/readyz`` answers ok."""
        records = self.records()
        if set(records) != set(PROCESS_ORDER) or not all(r.alive() for r in records.values()):
            return False
        try:
            return self._readyz(timeout=5.0)
        except (OSError, ssl.SSLError, ClusterError):
            return False

    def up(self, timeout: float = READY_TIMEOUT_S) -> Cluster:
        """Start the cluster, or reuse the running one; return ``self`` when ready."""
        if self.is_up():
            return self
        self.down()
        self.wipe()
        bin_dir = self.bin_dir
        for name in ("etcd", "kube-apiserver"):
            if not os.access(bin_dir / name, os.X_OK):
                raise ClusterError(f"{bin_dir / name} is missing: run `make controlplane`")
        last: Exception | None = None
        for _attempt in range(3):  # a port taken between choosing and binding: retry
            try:
                self.wipe()
                self._start(bin_dir, timeout)
                return self
            except ClusterError as exc:
                last = exc
                self.down()  # the logs stay, for whoever reads the error
        raise ClusterError(f"the cluster did not start: {last}")

    def down(self) -> None:
        """Stop every recorded process by PID, API server first; keep the state."""
        for name in reversed(PROCESS_ORDER):
            path = self.state_dir / "pids" / f"{name}.pid"
            record = ProcessRecord.load(path)
            if record is not None:
                stop_process(record)
                path.unlink(missing_ok=True)

    def wipe(self) -> None:
        """Remove the harness's entries of the state dir (never anything else)."""
        import shutil

        for entry in STATE_ENTRIES:
            path = self.state_dir / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        self._ssl = None

    def _spawn(self, name: str, argv: Sequence[str]) -> ProcessRecord:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "pids").mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                # Its own session: a Ctrl-C at the terminal of `make cluster` does not
                # reach it, and `down` is the one way it stops.
                start_new_session=True,
                preexec_fn=die_with_parent if self.tie_to_parent else None,
            )
        record = process_record(name, proc.pid)
        if record is None:
            raise ClusterError(f"{name} exited at once; see {self.log_dir / f'{name}.log'}")
        (self.state_dir / "pids" / f"{name}.pid").write_text(record.to_json() + "\n")
        return record

    def _start(self, bin_dir: Path, timeout: float) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = write_pki(self.pki_dir, service_ip=SERVICE_IP)
        endpoints = Endpoints(free_port(), free_port(), free_port(), str(bin_dir))
        (self.state_dir / "cluster.json").write_text(json.dumps(endpoints.__dict__) + "\n")
        etcd_dir = self.state_dir / "etcd"
        etcd_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        client_url = f"https://{LOOPBACK}:{endpoints.etcd_client_port}"
        peer_url = f"https://{LOOPBACK}:{endpoints.etcd_peer_port}"
        etcd = self._spawn("etcd", [
            str(bin_dir / "etcd"),
            "--name=testbed",
            f"--data-dir={etcd_dir / 'data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=testbed={peer_url}",
            "--initial-cluster-state=new",
            f"--cert-file={pki.etcd_server.cert}",
            f"--key-file={pki.etcd_server.key}",
            f"--trusted-ca-file={pki.ca.cert}",
            "--client-cert-auth",
            f"--peer-cert-file={pki.etcd_server.cert}",
            f"--peer-key-file={pki.etcd_server.key}",
            f"--peer-trusted-ca-file={pki.ca.cert}",
            "--peer-client-cert-auth",
            # The data is thrown away with the test session: trading durability for
            # speed is right here, and fsync on a shared CI disk costs seconds per test.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ])
        self._wait(
            lambda: self._etcd_healthy(client_url, pki.ca.cert, pki.etcd_client.cert,
                                       pki.etcd_client.key),
            etcd, "etcd", timeout,
        )
        apiserver = self._spawn("kube-apiserver", [
            str(bin_dir / "kube-apiserver"),
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={endpoints.apiserver_port}",
            f"--etcd-servers={client_url}",
            f"--etcd-cafile={pki.ca.cert}",
            f"--etcd-certfile={pki.etcd_client.cert}",
            f"--etcd-keyfile={pki.etcd_client.key}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.client_ca.cert}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki.sa_public}",
            f"--service-account-signing-key-file={pki.sa_private}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            # No anonymous requests: every test speaks as an identity it chose.
            "--anonymous-auth=false",
            "--allow-privileged=false",
            "--profiling=false",
            # Nothing here creates Pods (no scheduler, no kubelet), and the
            # ServiceAccount plugin only matters for Pods; without the token controller
            # it would reject any Pod a test stores to inspect its RBAC.
            "--disable-admission-plugins=ServiceAccount",
            # The endpoint reconciler refuses a loopback advertise address, and nothing
            # in this cluster dials the `kubernetes` Service's ClusterIP anyway.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.pki_dir / 'apiserver-generated'}",
        ])
        self._wait(lambda: self._readyz(timeout=5.0), apiserver, "kube-apiserver", timeout)
        self._write_admin_kubeconfig()
        # The bootstrap controller creates `default` a moment after /readyz; wait for it,
        # then give it the ServiceAccount the missing controller would have created.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self.request("GET", "/api/v1/namespaces/default")
                break
            except ApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.ensure_service_account("default", "default")

    def _wait(
        self, check: Callable[[], bool], record: ProcessRecord, name: str, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not record.alive():
                raise ClusterError(f"{name} exited: {self._log_tail(name)}")
            try:
                if check():
                    return
            except (OSError, ssl.SSLError, ClusterError):
                pass
            time.sleep(0.2)
        raise ClusterError(f"{name} not ready after {timeout:.0f}s: {self._log_tail(name)}")

    def _log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    @staticmethod
    def _etcd_healthy(url: str, ca: Path, cert: Path, key: Path) -> bool:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        with _open_direct(f"{url}/health", context, timeout=5) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")

    def _readyz(self, timeout: float) -> bool:
        with _open_direct(f"{self.server}/readyz", self._admin_ssl(), timeout=timeout) as resp:
            return bool(resp.status == 200)

    # REST as the admin

    def _admin_ssl(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
            context.load_cert_chain(
                str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key")
            )
            self._ssl = context
        return self._ssl

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """One API call as the admin (or with ``token``); the decoded JSON answer.

        Raises ``ApiError`` for any status >= 400.
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.server}{path}", data=data, method=method)  # noqa: S310
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
            context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        else:
            context = self._admin_ssl()
        try:
            with _open_direct(req, context, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(method, path, exc.code, exc.read().decode(errors="replace")) from exc
        if not raw:
            return {}
        parsed = json.loads(raw)
        return parsed if isinstance(parsed, dict) else {"items": parsed}

    # kubeconfigs

    def _kubeconfig_doc(self, user: str, credentials: Mapping[str, str]) -> dict[str, Any]:
        ca = base64.b64encode((self.pki_dir / "ca.crt").read_bytes()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testbed", "cluster": {
                "server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": dict(credentials)}],
            "contexts": [{"name": user, "context": {"cluster": "testbed", "user": user}}],
            "current-context": user,
        }

    @staticmethod
    def _write_private(path: Path, doc: Mapping[str, Any]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(dict(doc), handle, sort_keys=False)
        tmp.replace(path)
        return path

    def _write_admin_kubeconfig(self) -> Path:
        cert = base64.b64encode((self.pki_dir / "admin.crt").read_bytes()).decode()
        key = base64.b64encode((self.pki_dir / "admin.key").read_bytes()).decode()
        doc = self._kubeconfig_doc(
            "testbed-admin", {"client-certificate-data": cert, "client-key-data": key}
        )
        return self._write_private(self.kubeconfig, doc)

    def ensure_service_account(self, namespace: str, name: str) -> None:
        """Create ServiceAccount ``namespace/name`` unless it exists."""
        try:
            self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace},
            })
        except ApiError as exc:
            if exc.status != 409:
                raise

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Iterable[str] = (),
    ) -> str:
        """A token for ``system:serviceaccount:<namespace>:<name>`` from the TokenRequest API."""
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        token = answer.get("status", {}).get("token")
        if not isinstance(token, str) or not token:
            raise ClusterError(f"TokenRequest for {namespace}/{name} returned no token")
        return token

    def service_account_kubeconfig(
        self,
        namespace: str,
        name: str,
        path: Path | None = None,
        *,
        expiration_seconds: int = 3600,
        create: bool = False,
    ) -> Path:
        """A kubeconfig that speaks as ServiceAccount ``namespace/name`` with exactly its RBAC.

        The token comes from TokenRequest and expires after ``expiration_seconds``
        (the API server's minimum is 600). ``create=True`` first creates the
        ServiceAccount if it is missing. Written mode 0600 to ``path`` or to
        ``<state>/kubeconfigs/<namespace>.<name>.yaml``.
        """
        if create:
            self.ensure_service_account(namespace, name)
        token = self.service_account_token(
            namespace, name, expiration_seconds=expiration_seconds
        )
        target = path or self.state_dir / "kubeconfigs" / f"{namespace}.{name}.yaml"
        user = f"system:serviceaccount:{namespace}:{name}"
        doc = self._kubeconfig_doc(user, {"token": token})
        doc["contexts"][0]["context"]["namespace"] = namespace
        return self._write_private(target, doc)

    # namespaces (what the namespace and service-account controllers would do)

    def create_namespace(
        self, name: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> str:
        """Create a namespace (``testbed-<random>`` if unnamed) and its ``default`` SA."""
        ns = name or f"testbed-{secrets.token_hex(4)}"
        self.request("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": dict(labels or {})},
        })
        self.ensure_service_account(ns, "default")
        return ns

    def namespaced_resources(self) -> list[str]:
        """API paths (``/api/v1`` or ``/apis/G/V``) + resource names that can be deleted
        by collection in a namespace, from discovery (CRDs included)."""
        found: list[str] = []
        group_versions = ["/api/v1"]
        groups = self.request("GET", "/apis").get("groups", [])
        for group in groups:
            for version in group.get("versions", []):
                group_versions.append(f"/apis/{version['groupVersion']}")
        for base in group_versions:
            try:
                listing = self.request("GET", base)
            except ApiError:
                continue  # an aggregated API that is not served: nothing stored there
            for resource in listing.get("resources", []):
                if (
                    resource.get("namespaced")
                    and "/" not in resource["name"]
                    and "deletecollection" in resource.get("verbs", [])
                ):
                    found.append(f"{base}/namespaces/{{ns}}/{resource['name']}")
        return found

    def delete_namespace(self, name: str, *, timeout: float = 60.0) -> None:
        """Delete a namespace and everything in it, as the namespace controller would.

        Finalizers on the objects are cleared once they are marked for deletion (no
        controller is left to honour them in a test cluster), then the namespace's own
        ``kubernetes`` finalizer is removed through ``/finalize``.
        """
        quoted = urllib.parse.quote(name)
        try:
            self.request("DELETE", f"/api/v1/namespaces/{quoted}")
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        deadline = time.monotonic() + timeout
        templates = self.namespaced_resources()
        while True:
            remaining = 0
            for template in templates:
                path = template.format(ns=quoted)
                with contextlib.suppress(ApiError):
                    self.request("DELETE", path)
                try:
                    items = self.request("GET", path).get("items", [])
                except ApiError:
                    continue
                for item in items:
                    remaining += 1
                    meta = item.get("metadata", {})
                    if meta.get("finalizers") and meta.get("deletionTimestamp"):
                        with contextlib.suppress(ApiError):
                            self.request(
                                "PATCH",
                                f"{path}/{urllib.parse.quote(meta['name'])}",
                                {"metadata": {"finalizers": None}},
                                content_type="application/merge-patch+json",
                            )
            if remaining == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        try:
            ns = self.request("GET", f"/api/v1/namespaces/{quoted}")
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        ns.setdefault("spec", {})["finalizers"] = []
        with contextlib.suppress(ApiError):
            self.request("PUT", f"/api/v1/namespaces/{quoted}/finalize", ns)
        while time.monotonic() < deadline:
            try:
                self.request("GET", f"/api/v1/namespaces/{quoted}")
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.1)
        raise ClusterError(f"namespace {name} still present after {timeout:.0f}s")

    # kubectl

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        check: bool = True,
        input_text: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster (admin unless ``kubeconfig``)."""
        argv = [str(self.binary("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}",
                *args]
        return subprocess.run(
            argv, capture_output=True, text=True, check=check, input=input_text,
            timeout=timeout,
        )


def main(argv: Sequence[str]) -> int:
    """``python -m testbed cluster up|down|status [--state-dir DIR]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m testbed cluster")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=Path(".cluster"))
    parser.add_argument("--no-build", action="store_true",
                        help="fail instead of building missing binaries")
    args = parser.parse_args(list(argv))
    cluster = Cluster(args.state_dir)
    if args.action == "down":
        cluster.down()
        sys.stdout.write(f"stopped the cluster of {cluster.state_dir}\n")
        return 0
    if args.action == "status":
        up = cluster.is_up()
        sys.stdout.write(f"{'up' if up else 'down'}: {cluster.state_dir} {cluster.pids()}\n")
        return 0 if up else 1
    from testbed.build import BuildError, ensure_built

    if not cluster.is_up():
        # A fresh start: use the bin dir of the current pins, not one recorded before.
        try:
            cluster = Cluster(
                args.state_dir,
                ensure_built("controlplane") if not args.no_build else None,
            )
        except BuildError as exc:
            sys.stderr.write(f"cannot build the control plane: {exc}\n")
            return 1
    try:
        cluster.up()
    except ClusterError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stderr.write(
        f"cluster up: {cluster.server} (etcd and kube-apiserver, pids {cluster.pids()});"
        f" logs in {cluster.log_dir}; stop with `make cluster-down`\n"
    )
    sys.stdout.write(f"export KUBECONFIG={cluster.kubeconfig}\n")
    return 0
