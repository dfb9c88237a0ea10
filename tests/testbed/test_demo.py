"""``make run``'s two branches (``testbed/demo.py``), with the real programs.

The demo test brings the demo up on a fresh state dir (its own etcd, kube-apiserver and
docker-registry, tied to this process), runs the controller as ``make run`` would but
as a child with ephemeral ports, and checks with the built kubectl and flux CLI what the
printed instructions promise: the sample repository becomes Ready, the policy resolves,
a pushed tag moves it. A second bring-up must reuse everything, and ``down`` must stop
every recorded PID. The probe tests cover how ``make run`` decides that a cluster is
already there.
"""

from __future__ import annotations

import ast
import asyncio
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from testbed.build import REPO_ROOT, cache_root
from testbed.cluster import Cluster, free_port
from testbed.demo import (
    DEMO_LATEST,
    DEMO_NAME,
    DEMO_NAMESPACE,
    DEMO_TAGS,
    NEXT_TAG,
    Probe,
    bring_up,
    controller_argv,
    down,
    instructions,
    probe_current_cluster,
    probe_current_cluster_async,
    use_demo,
)
from testbed.localregistry import LocalRegistry
from testbed.pytest_plugin import require_binaries

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    # No proxy may stand between a child and its loopback servers.
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and k != "KUBERNETES_SERVICE_HOST"}
    env.update(extra)
    return env


def _wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes],
                   within: float = 60.0) -> str:
    """Wait until ``path`` (a child's log) contains ``text``; fail if the child exits."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode} before {text!r}:\n{content}")
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} within {within}s:\n{path.read_text(errors='replace')}")


def _interrupt(process: subprocess.Popen[bytes]) -> int:
    """Ctrl-C, as at the terminal of `make run`; the exit status."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def _listening_addresses(pid: int) -> set[str]:
    inodes = {os.readlink(fd)[len("socket:["):-1] for fd in Path(f"/proc/{pid}/fd").iterdir()
              if os.readlink(fd).startswith("socket:[")}
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1].split(":")[0])
    return found


@pytest.fixture
def fresh_state(tmp_path: Path) -> Iterator[Path]:
    """A state dir nobody used; whatever the test started there is stopped afterwards."""
    require_binaries("controlplane")
    state = tmp_path / "state"
    try:
        yield state
    finally:
        down(state)


def test_demo_comes_up_scans_the_sample_and_is_reused(fresh_state: Path,
                                                      tmp_path: Path) -> None:
    log = io.StringIO()
    demo = bring_up(fresh_state, log=log, tie_to_parent=True)
    assert f"pushed {len(DEMO_TAGS)} of {len(DEMO_TAGS)} sample tags" in log.getvalue()
    record = demo.registry.record()
    assert record is not None
    assert record.alive()
    assert _listening_addresses(record.pid) == {"0100007F"}  # 127.0.0.1 only
    assert sorted(demo.registry.tags("stefanprodan/podinfo")) == sorted(DEMO_TAGS)
    # Everything the demo wrote is under the state dir.
    assert (fresh_state / "demo" / "registry" / "config.yml").is_file()
    assert (fresh_state / "demo" / "samples.yaml").is_file()

    controller_log = tmp_path / "controller.log"
    with controller_log.open("wb") as sink:
        controller = subprocess.Popen(
            controller_argv(demo.controller_kubeconfig, storage_path=str(tmp_path / "data"),
                            metrics_addr="127.0.0.1:0", health_addr="127.0.0.1:0"),
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, env=_env(),
            cwd=tmp_path)
    try:
        kubectl = demo.cluster.kubectl
        ns = ("-n", DEMO_NAMESPACE)
        kubectl("wait", "--for=condition=ready", f"imagerepository/{DEMO_NAME}", *ns,
                "--timeout=60s", timeout=90)
        kubectl("wait", "--for=condition=ready", f"imagepolicy/{DEMO_NAME}", *ns,
                "--timeout=60s", timeout=90)
        latest = kubectl("get", f"imagepolicy/{DEMO_NAME}", *ns,
                         "-o", "jsonpath={.status.latestImage}").stdout
        assert latest == f"{demo.image}:{DEMO_LATEST}"
        # The controller speaks as the manifests' ServiceAccount, not as the admin.
        whoami = kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                         kubeconfig=demo.controller_kubeconfig).stdout
        assert whoami == "system:serviceaccount:image-reflector-system:" \
                         "image-reflector-controller"

        # A second `make run`: the same processes, nothing pushed, the same objects.
        again_log = io.StringIO()
        again = bring_up(fresh_state, log=again_log, tie_to_parent=True)
        assert again.cluster.pids() == demo.cluster.pids()
        assert again.registry.record() == record
        assert again.registry.host == demo.registry.host
        assert f"pushed 0 of {len(DEMO_TAGS)}" in again_log.getvalue()
        assert "reusing etcd + kube-apiserver" in again_log.getvalue()
        generation = kubectl("get", f"imagerepository/{DEMO_NAME}", *ns,
                             "-o", "jsonpath={.metadata.generation}").stdout
        assert generation == "1"

        # The printed commands do what they say.
        text = instructions(demo, storage_path="./data", metrics_addr="127.0.0.1:8080",
                            health_addr="127.0.0.1:9440")
        assert f"export KUBECONFIG={fresh_state / 'kubeconfig'} " \
               f"PATH={demo.cluster.bin_dir}:$PATH" in text
        assert "kubectl get imagerepositories,imagepolicies -A" in text
        assert f"kubectl events -n {DEMO_NAMESPACE} --for imagerepository/{DEMO_NAME}" in text
        push = subprocess.run(
            [sys.executable, "-m", "testbed", "demo", "push", NEXT_TAG,
             "--state-dir", str(fresh_state)],
            cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=60,
            check=False)
        assert push.returncode == 0, push.stderr
        assert f"pushed {demo.image}:{NEXT_TAG} sha256:" in push.stdout
        flux = subprocess.run(
            [str(demo.cluster.binary("flux")), "reconcile", "image", "repository", DEMO_NAME,
             "-n", DEMO_NAMESPACE, "--kubeconfig", str(demo.cluster.kubeconfig),
             "--timeout=60s"],
            env=_env(), capture_output=True, text=True, timeout=90, check=False)
        assert flux.returncode == 0, flux.stderr
        assert f"scan fetched {len(DEMO_TAGS) + 1} tags" in flux.stderr
        kubectl("wait", f"--for=jsonpath={{.status.latestImage}}={demo.image}:{NEXT_TAG}",
                f"imagepolicy/{DEMO_NAME}", *ns, "--timeout=60s", timeout=90)
        assert _interrupt(controller) == 0, controller_log.read_text()
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()

    records = [*demo.cluster.records().values(), record]
    down(fresh_state)
    assert not any(r.alive() for r in records)
    assert not demo.cluster.is_up()
    assert not LocalRegistry(demo.registry.directory).is_up()


def test_make_run_uses_a_cluster_that_answers_and_the_demo_otherwise(
        fresh_state: Path, tmp_path: Path) -> None:
    demo = bring_up(fresh_state, log=io.StringIO(), tie_to_parent=True)
    run = [sys.executable, "-m", "testbed", "run", "--state-dir", str(fresh_state),
           "--storage-path", str(tmp_path / "data"), "--metrics-addr", "127.0.0.1:0",
           "--health-addr", "127.0.0.1:0"]

    # A kubeconfig of some other cluster that answers (here: a copy of the demo's
    # admin kubeconfig, so no second cluster is needed): `make run` as it always was.
    other = tmp_path / "other-kubeconfig"
    shutil.copy(demo.cluster.kubeconfig, other)
    out = tmp_path / "reachable.log"
    with out.open("wb") as sink:
        process = subprocess.Popen(run, cwd=REPO_ROOT, env=_env(KUBECONFIG=str(other)),
                                   stdin=subprocess.DEVNULL, stdout=sink,
                                   stderr=subprocess.STDOUT)
    try:
        text = _wait_for_text(out, "informers synced", process)
        assert _interrupt(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert f"the cluster of KUBECONFIG={other} answers ({demo.cluster.server}, " \
           "GET /readyz: HTTP 200)" in text
    assert "CustomResourceDefinitions already present" in text
    assert "The demo is up" not in text

    # KUBECONFIG exported from the demo's instructions names the demo's own cluster,
    # and no kubeconfig at all means no cluster: both run the demo (and reuse it).
    # A HOME without .kube/config; the build cache stays where the binaries are.
    no_kubeconfig = _env(HOME=str(tmp_path), XDG_CACHE_HOME=str(cache_root().parent))
    no_kubeconfig.pop("KUBECONFIG", None)
    for name, env in (("own", _env(KUBECONFIG=str(fresh_state / "kubeconfig"))),
                      ("none", no_kubeconfig)):
        out = tmp_path / f"{name}.log"
        with out.open("wb") as sink:
            process = subprocess.Popen(run, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                       stdout=sink, stderr=subprocess.STDOUT)
        try:
            text = _wait_for_text(out, "informers synced", process)
            assert _interrupt(process) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert "using the local demo" in text
        assert "is the demo's own" in text if name == "own" else "there is no file" in text
        assert "reusing etcd + kube-apiserver" in text
        assert "The demo is up" in text
        assert "install-crds" not in text


# --- how `make run` decides -------------------------------------------------------------


def _kubeconfig(path: Path, server: str, *, token: str = "t",  # noqa: S107 (not a secret)
                ca_data: str | None = None) -> Path:
    cluster: dict[str, object] = {"server": server}
    if ca_data is not None:
        cluster["certificate-authority-data"] = ca_data
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": cluster}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": token}}],
    }))
    return path


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No KUBECONFIG, not in a cluster, an empty HOME, no proxies."""
    for name in list(os.environ):
        if "proxy" in name.lower() or name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_probe_finds_the_cluster_of_kubeconfig(kube_cluster: Cluster,
                                               plain_env: pytest.MonkeyPatch) -> None:
    plain_env.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    probe = probe_current_cluster()
    assert probe == Probe(True, f"KUBECONFIG={kube_cluster.kubeconfig}",
                          kube_cluster.kubeconfig, kube_cluster.server,
                          "GET /readyz: HTTP 200")


def test_probe_takes_a_refusing_cluster_for_the_one_meant(
        kube_cluster: Cluster, plain_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A server that answers but refuses the credentials is the user's cluster all the
    # same: `make run` uses it (and the controller reports the 401), it does not start
    # a different one behind their back.
    admin = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    ca_data = admin["clusters"][0]["cluster"]["certificate-authority-data"]
    path = _kubeconfig(tmp_path / "kubeconfig", kube_cluster.server, token="expired",
                       ca_data=ca_data)
    plain_env.setenv("KUBECONFIG", str(path))
    probe = probe_current_cluster()
    assert probe.reachable
    assert probe.detail == "GET /readyz: HTTP 401"


def test_probe_without_a_kubeconfig_says_so(plain_env: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    probe = probe_current_cluster()
    home_config = tmp_path / "home" / ".kube" / "config"
    assert probe == Probe(False, "~/.kube/config", home_config, "",
                          f"there is no file {home_config}")


def test_probe_with_nothing_listening_is_unreachable(plain_env: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    port = free_port()
    plain_env.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", f"http://127.0.0.1:{port}")))
    started = time.monotonic()
    probe = probe_current_cluster()
    assert not probe.reachable
    assert "Connect" in probe.detail
    assert time.monotonic() - started < 5


def test_probe_of_a_silent_server_gives_up_in_time(plain_env: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    # It accepts connections (the kernel completes the handshake into the backlog) and
    # never answers: a firewall that drops, a hung server.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        plain_env.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", url)))
        started = time.monotonic()
        probe = probe_current_cluster(per_request=0.5)
        elapsed = time.monotonic() - started
    assert not probe.reachable
    assert probe.detail.startswith(("TimeoutError", "ServerTimeoutError")), probe.detail
    assert elapsed < 3  # one timeout, not one per path


async def test_probe_asks_version_when_readyz_fails(plain_env: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    async def readyz(_: web.Request) -> web.Response:
        return web.Response(status=503, text="[-]etcd failed")

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"gitVersion": "v1.37.2"})

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        plain_env.setenv("KUBECONFIG",
                         str(_kubeconfig(tmp_path / "k", f"http://127.0.0.1:{port}")))
        probe = await probe_current_cluster_async()
        assert probe.reachable
        assert probe.detail == "GET /version: HTTP 200"
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)


def test_use_demo_only_without_another_cluster(tmp_path: Path) -> None:
    state = tmp_path / "state"
    other = Probe(True, "KUBECONFIG=x", tmp_path / "x", "https://h", "GET /readyz: HTTP 200")
    ours = Probe(True, "KUBECONFIG=y", state / "kubeconfig", "https://h", "ok")
    none = Probe(False, "~/.kube/config", tmp_path / "c", "", "there is no file")
    in_cluster = Probe(True, "in-cluster", None, "https://10.0.0.1", "ok")
    assert not use_demo(other, state)
    assert use_demo(ours, state)
    assert use_demo(none, state)
    assert not use_demo(in_cluster, state)


def test_the_test_bed_never_imports_the_tests() -> None:
    # `make run` runs testbed/ on machines where tests/ is only a directory of files.
    for path in (REPO_ROOT / "testbed").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "tests" or n.startswith("tests.") for n in names), path
