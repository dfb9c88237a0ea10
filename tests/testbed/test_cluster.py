"""The test-bed cluster itself: real etcd + kube-apiserver, RBAC, kubectl, lifecycle.

These run the binaries ``make controlplane`` builds. The session cluster
(``kube_cluster``) serves the API tests; the lifecycle tests start clusters of their
own in their tmp dirs, so stopping them cannot disturb the session's.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from testbed.build import TARGETS
from testbed.cluster import ApiError, Cluster, ProcessRecord

pytestmark = pytest.mark.slow


def test_cluster_is_ready_on_loopback(kube_cluster: Cluster) -> None:
    assert kube_cluster.is_up()
    assert kube_cluster.server.startswith("https://127.0.0.1:")
    ready = kube_cluster.request("GET", "/api/v1/namespaces/default")
    assert ready["metadata"]["name"] == "default"
    # The harness stands in for the service-account controller in `default`.
    kube_cluster.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")


def test_admin_kubeconfig_is_private_and_names_loopback(kube_cluster: Cluster) -> None:
    assert kube_cluster.kubeconfig.stat().st_mode & 0o077 == 0
    doc = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == kube_cluster.server


def test_kubectl_lists_namespaces(kube_cluster: Cluster) -> None:
    done = kube_cluster.kubectl("get", "namespaces", "-o", "json")
    names = {item["metadata"]["name"] for item in json.loads(done.stdout)["items"]}
    assert {"default", "kube-system", "kube-public"} <= names


def test_kubectl_version_shows_the_pinned_release(kube_cluster: Cluster) -> None:
    release = TARGETS["controlplane"].release()
    done = kube_cluster.kubectl("version", "-o", "json")
    versions = json.loads(done.stdout)
    assert versions["clientVersion"]["gitVersion"] == release
    assert versions["serverVersion"]["gitVersion"] == release


def test_service_account_without_roles_is_forbidden(
    kube_cluster: Cluster, kube_namespace: str
) -> None:
    kubeconfig = kube_cluster.service_account_kubeconfig(
        kube_namespace, "nobody", create=True
    )
    assert kubeconfig.stat().st_mode & 0o077 == 0
    done = kube_cluster.kubectl("get", "configmaps", kubeconfig=kubeconfig, check=False)
    assert done.returncode != 0
    assert "forbidden" in done.stderr.lower()
    assert f"system:serviceaccount:{kube_namespace}:nobody" in done.stderr
    token = kube_cluster.service_account_token(kube_namespace, "nobody")
    with pytest.raises(ApiError) as caught:
        kube_cluster.request("GET", f"/api/v1/namespaces/{kube_namespace}/secrets",
                             token=token)
    assert caught.value.status == 403


def test_service_account_gets_exactly_its_role(
    kube_cluster: Cluster, kube_namespace: str
) -> None:
    kube_cluster.ensure_service_account(kube_namespace, "reader")
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "cm-reader", "namespace": kube_namespace},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "cm-reader", "namespace": kube_namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader",
                      "namespace": kube_namespace}],
    }
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{kube_namespace}"
    kube_cluster.request("POST", f"{base}/roles", role)
    kube_cluster.request("POST", f"{base}/rolebindings", binding)
    kubeconfig = kube_cluster.service_account_kubeconfig(kube_namespace, "reader")
    assert kube_cluster.kubectl("get", "configmaps", kubeconfig=kubeconfig).returncode == 0
    denied = kube_cluster.kubectl("get", "secrets", kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()


def test_namespace_fixture_is_fresh_and_deletion_completes(kube_cluster: Cluster) -> None:
    ns = kube_cluster.create_namespace()
    kube_cluster.request("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")
    # An object with a finalizer nobody will remove: the namespace controller's job,
    # done by the harness, must still get the namespace deleted.
    kube_cluster.request("POST", f"/api/v1/namespaces/{ns}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
    })
    kube_cluster.delete_namespace(ns)
    with pytest.raises(ApiError) as caught:
        kube_cluster.request("GET", f"/api/v1/namespaces/{ns}")
    assert caught.value.status == 404
    # Its objects went with it: a later namespace of that name starts empty.
    kube_cluster.create_namespace(ns)
    items = kube_cluster.request("GET", f"/api/v1/namespaces/{ns}/configmaps")["items"]
    assert items == []
    kube_cluster.delete_namespace(ns)


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses of the listening TCP sockets that ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1].split(":")[0])
    return found


def test_every_process_listens_on_loopback_only(kube_cluster: Cluster) -> None:
    loopback_v4 = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
    for name, pid in kube_cluster.pids().items():
        addresses = _listening_addresses(pid)
        assert addresses, f"{name} listens nowhere?"
        assert addresses == {loopback_v4}, f"{name} listens on {addresses}"


def _bin_dir(kube_cluster: Cluster) -> Path:
    return kube_cluster.bin_dir


def test_up_twice_reuses_the_running_cluster(kube_cluster: Cluster, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "state", _bin_dir(kube_cluster), tie_to_parent=True)
    try:
        cluster.up()
        first = cluster.pids()
        server = cluster.server
        # A second handle on the same state dir, as a second `make cluster` would have.
        again = Cluster(tmp_path / "state", tie_to_parent=True).up()
        assert again.pids() == first
        assert again.server == server
        assert again.is_up()
    finally:
        cluster.down()


def test_down_stops_every_recorded_pid(kube_cluster: Cluster, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "state", _bin_dir(kube_cluster), tie_to_parent=True)
    try:
        cluster.up()
        records = cluster.records()
        assert set(records) == {"etcd", "kube-apiserver"}
        assert all(record.alive() for record in records.values())
    finally:
        cluster.down()
    assert not any(record.alive() for record in records.values())
    assert cluster.records() == {}
    assert not cluster.is_up()


def test_stale_state_is_cleaned_up_and_started_fresh(
    kube_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = Cluster(tmp_path / "state", _bin_dir(kube_cluster), tie_to_parent=True)
    try:
        cluster.up()
        first = cluster.records()
        # The API server dies behind the harness's back: etcd alone is stale state.
        from testbed.cluster import stop_process

        stop_process(first["kube-apiserver"])
        assert not cluster.is_up()
        cluster.up()
        assert cluster.is_up()
        assert not first["etcd"].alive()  # the stale etcd was stopped, not leaked
        assert cluster.pids()["etcd"] != first["etcd"].pid
    finally:
        cluster.down()


def test_a_reused_pid_is_never_taken_for_ours(tmp_path: Path) -> None:
    # A record whose start time does not match the live process with that PID (here:
    # this very pytest process) must count as dead, so `down` never signals it.
    me = os.getpid()
    stat = Path(f"/proc/{me}/stat").read_text()
    start = int(stat[stat.rindex(")") + 2:].split()[19])
    assert ProcessRecord("x", me, start).alive()
    stale = ProcessRecord("kube-apiserver", me, start + 1)
    assert not stale.alive()
    pids = tmp_path / "state" / "pids"
    pids.mkdir(parents=True)
    (pids / "kube-apiserver.pid").write_text(stale.to_json())
    Cluster(tmp_path / "state", tmp_path).down()  # must not SIGTERM pytest


def test_command_line_up_and_down(kube_cluster: Cluster, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    state = tmp_path / "cli-state"
    env = {**os.environ, "PYTHONPATH": str(root)}
    up = subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-m", "testbed", "cluster", "up",
         "--state-dir", str(state)],
        capture_output=True, text=True, timeout=300, env=env, cwd=root, check=False,
    )
    cluster = Cluster(state)
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={state / 'kubeconfig'}"
        assert cluster.is_up()
    finally:
        down = subprocess.run(
            [str(root / ".venv" / "bin" / "python"), "-m", "testbed", "cluster", "down",
             "--state-dir", str(state)],
            capture_output=True, text=True, timeout=120, env=env, cwd=root, check=False,
        )
        cluster.down()
    assert down.returncode == 0, down.stderr
    assert not cluster.is_up()


def test_test_clusters_die_with_the_session(kube_cluster: Cluster, tmp_path: Path) -> None:
    # A session killed without teardown (here: a child Python that starts a cluster
    # and exits without `down`) must not leave etcd or kube-apiserver running.
    root = Path(__file__).resolve().parents[2]
    script = (
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "from testbed.cluster import Cluster\n"
        "c = Cluster(Path(sys.argv[1]), Path(sys.argv[2]), tie_to_parent=True).up()\n"
        "print(json.dumps([r.__dict__ for r in c.records().values()]), flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-c", script, str(tmp_path / "state"),
         str(kube_cluster.bin_dir)],
        capture_output=True, text=True, timeout=300, cwd=root, check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    records = [ProcessRecord(**raw) for raw in json.loads(done.stdout.splitlines()[-1])]
    assert len(records) == 2
    import time

    deadline = time.monotonic() + 30
    while any(r.alive() for r in records) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(r.alive() for r in records)
