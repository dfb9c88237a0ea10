"""``make run``: the controller against the current cluster, or against a local demo.

Role: decide where ``make run`` runs the controller, and bring up what it needs there.

- ``probe_current_cluster`` loads the configuration the controller itself would load
  (``$KUBECONFIG``, else in-cluster, else ``~/.kube/config``; the product's own loader,
  exec plugins included) and asks that API server for ``/readyz``, then ``/version``,
  within a few seconds.
- When a cluster answers, ``run`` does what ``make run`` always did:
  ``imagereflector install-crds``, then the controller as the kubeconfig's user.
- When none answers, ``bring_up`` starts the test bed's etcd + kube-apiserver in the
  state dir (``.cluster/``; the binaries are built first when missing, which takes
  about eight minutes once), a local ``docker-registry`` holding a podinfo-like
  repository, applies ``manifests/`` without its Deployment and Service (the controller
  runs in the foreground in their place), applies a sample ImageRepository and
  ImagePolicy in ``image-demo``, and mints a kubeconfig for the manifests'
  ServiceAccount; ``run`` prints the commands to look at it and execs the controller.

Decisions:

- The demo's controller runs as the ServiceAccount ``image-reflector-system/
  image-reflector-controller`` (a TokenRequest token valid for a week, minted again on
  every ``make run``), not as the admin: a verb missing from ``manifests/rbac`` then
  shows up in ``make run`` as a 403, as it would in a real deployment, instead of being
  hidden by ``system:masters``. The "reachable cluster" branch runs as the user of the
  current kubeconfig, as before, because that cluster may not have our RBAC installed.
- A server that answers with any HTTP status below 500 counts as reachable, 401 and 403
  included: the kubeconfig names that cluster, so ``make run`` uses it and the
  controller reports the refusal, rather than quietly starting a different cluster.
- The samples are applied on every run with server-side apply and ``--force-conflicts``:
  a second ``make run`` changes nothing, except ``spec.image`` when the registry had to
  move to another port.

Invariants:

- ``imagereflector`` never imports this module; this module imports from the product
  only the kubeconfig loader, so "reachable" means reachable for the controller.
- Idempotent: a running cluster and registry are reused (``Cluster.up`` and
  ``LocalRegistry.up``), and only missing sample tags are pushed.
- Every process started here is recorded by PID under the state dir and stopped by
  ``down`` (``make cluster-down``); nothing listens off 127.0.0.1. The foreground
  controller is the one thing Ctrl-C stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

from testbed.build import REPO_ROOT, BuildError, ensure_built, missing
from testbed.cluster import Cluster, ClusterError
from testbed.localregistry import DEBIAN_PACKAGE, LocalRegistry, RegistryError, find_program

DEMO_NAMESPACE = "image-demo"
DEMO_NAME = "podinfo"
DEMO_REPOSITORY = "stefanprodan/podinfo"
# A handful of podinfo-like releases and a moving tag; the policy picks 6.5.1.
DEMO_TAGS = ("6.0.0", "6.1.0", "6.2.0", "6.3.0", "6.4.0", "6.5.0", "6.5.1", "latest")
DEMO_RANGE = ">=6.0.0 <7.0.0"
DEMO_LATEST = "6.5.1"
NEXT_TAG = "6.6.0"  # what the printed instructions suggest pushing
# Short enough that a pushed tag shows up within a minute without a reconcile request.
DEMO_INTERVAL = "1m"
FIELD_MANAGER = "imagereflector-demo"
CONTROLLER_NAMESPACE = "image-reflector-system"
CONTROLLER_SERVICE_ACCOUNT = "image-reflector-controller"
TOKEN_SECONDS = 7 * 24 * 3600
PROBE_TIMEOUT_S = 3.0
# An exec plugin that waits for a browser login must not hang `make run` forever.
LOAD_TIMEOUT_S = 20.0
MANIFESTS = REPO_ROOT / "manifests"
DEFAULT_STATE_DIR = Path(".cluster")  # the Makefile's CLUSTER_STATE
CRDS = ("imagerepositories.image.toolkit.fluxcd.io", "imagepolicies.image.toolkit.fluxcd.io")
# Kinds of manifests/ the demo leaves out: the controller runs in the foreground instead
# of as a Pod, and this cluster has no scheduler or kubelet to run one anyway.
SKIPPED_KINDS = ("Deployment", "Service")


# --- is there a cluster already? -------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What ``probe_current_cluster`` found.

    ``source`` names the configuration (``KUBECONFIG=…``, ``~/.kube/config``,
    ``in-cluster``); ``kubeconfig`` is its file (None in-cluster); ``detail`` says what
    answered, or why nothing did.
    """

    reachable: bool
    source: str
    kubeconfig: Path | None
    server: str
    detail: str


def _configured_file(environ: dict[str, str]) -> tuple[str, Path | None]:
    """The configuration the controller would load, as ``load_api_client`` orders it."""
    path = environ.get("KUBECONFIG", "")
    if environ.get("KUBERNETES_SERVICE_HOST") and not path:
        return "in-cluster", None
    if path:
        # Like kubectl and the controller, the first file of a list wins.
        first = Path(path.split(os.pathsep)[0]).expanduser()
        return f"KUBECONFIG={first}", first
    return "~/.kube/config", Path("~/.kube/config").expanduser()


async def probe_current_cluster_async(per_request: float = PROBE_TIMEOUT_S) -> Probe:
    """Ask the current configuration's API server for ``/readyz``, then ``/version``."""
    import aiohttp

    from imagereflector.kube.client import KubeConfigError, load_api_client

    source, kubeconfig = _configured_file(dict(os.environ))
    if kubeconfig is not None and not kubeconfig.is_file():
        # The loader's own message advises on KUBECONFIG, which is not the point here.
        return Probe(False, source, kubeconfig, "", f"there is no file {kubeconfig}")
    try:
        api = await asyncio.wait_for(load_api_client(), timeout=LOAD_TIMEOUT_S)
    except KubeConfigError as err:
        return Probe(False, source, kubeconfig, "", str(err))
    except TimeoutError:
        return Probe(False, source, kubeconfig, "",
                     f"loading the configuration took over {LOAD_TIMEOUT_S:.0f}s")
    except Exception as err:  # a broken config of any kind: no usable cluster
        return Probe(False, source, kubeconfig, "", f"cannot load it: {err}")
    server = str(api.configuration.host)
    try:
        detail = "no answer"
        for path in ("/readyz", "/version"):
            try:
                resp = await api.call_api(
                    path, "GET", header_params={"Accept": "*/*"},
                    auth_settings=["BearerToken"], _preload_content=False,
                    _request_timeout=aiohttp.ClientTimeout(total=per_request))
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                # Nothing listens, or it does not answer in time: the other path on
                # the same server would not either.
                detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                break
            status = int(resp.status)
            resp.release()
            detail = f"GET {path}: HTTP {status}"
            if status < 500:
                return Probe(True, source, kubeconfig, server, detail)
        return Probe(False, source, kubeconfig, server, detail)
    finally:
        await api.close()


def probe_current_cluster(per_request: float = PROBE_TIMEOUT_S) -> Probe:
    """``probe_current_cluster_async`` for synchronous callers."""
    return asyncio.run(probe_current_cluster_async(per_request))


# --- the demo ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    """A running demo: cluster, registry, and the controller's ServiceAccount kubeconfig."""

    state_dir: Path
    cluster: Cluster
    registry: LocalRegistry
    controller_kubeconfig: Path

    @property
    def image(self) -> str:
        return f"{self.registry.host}/{DEMO_REPOSITORY}"


def registry_dir(state_dir: Path) -> Path:
    """Where the demo registry keeps its config, storage, log and PID."""
    return state_dir.resolve() / "demo" / "registry"


def samples(image: str) -> list[dict[str, object]]:
    """The demo's namespace, ImageRepository and ImagePolicy for ``image``."""
    meta = {"name": DEMO_NAME, "namespace": DEMO_NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEMO_NAMESPACE}},
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
            "kind": "ImageRepository",
            "metadata": dict(meta),
            "spec": {"image": image, "interval": DEMO_INTERVAL},
        },
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
            "kind": "ImagePolicy",
            "metadata": dict(meta),
            "spec": {"imageRepositoryRef": {"name": DEMO_NAME},
                     "policy": {"semver": {"range": DEMO_RANGE}}},
        },
    ]


def _say(log: TextIO, text: str) -> None:
    log.write(text + "\n")
    log.flush()


def _installable_manifests(cluster: Cluster) -> str:
    """``kubectl kustomize manifests/`` without the kinds the demo does not run."""
    rendered = cluster.kubectl("kustomize", str(MANIFESTS), timeout=120).stdout
    kept = [doc for doc in yaml.safe_load_all(rendered)
            if isinstance(doc, dict) and doc.get("kind") not in SKIPPED_KINDS]
    return yaml.safe_dump_all(kept, sort_keys=False)


def _apply(cluster: Cluster, documents: str, *extra: str) -> None:
    done = cluster.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
                           *extra, "-f", "-", input_text=documents, check=False, timeout=120)
    if done.returncode != 0:
        raise ClusterError(f"kubectl apply failed: {done.stderr.strip()}")


def ensure_binaries(log: TextIO) -> Path:
    """The control plane's bin dir, built first (with progress on ``log``) when missing."""
    absent = missing("controlplane")
    if absent:
        _say(log, f"First run: building {', '.join(absent)} from source with your Go "
                  "toolchain into ~/.cache/imagereflector. This takes about 8 minutes on "
                  "2 cores, once; later runs start in seconds. Progress every 15 s:")
    return ensure_built("controlplane", log=log)


def bring_up(state_dir: Path, *, log: TextIO, tie_to_parent: bool = False) -> Demo:
    """Cluster, registry, manifests, samples and the controller's kubeconfig; idempotent.

    ``tie_to_parent`` makes the started processes die with this one (tests); ``make
    run``'s outlive it until ``make cluster-down``.
    """
    state_dir = state_dir.resolve()
    bins = ensure_binaries(log)
    started = time.monotonic()
    cluster = Cluster(state_dir, bins, tie_to_parent=tie_to_parent)
    reused = cluster.is_up()
    cluster.up()
    _say(log, f"cluster: {'reusing' if reused else 'started'} etcd + kube-apiserver at "
              f"{cluster.server} ({time.monotonic() - started:.1f}s)")

    started = time.monotonic()
    registry = LocalRegistry(registry_dir(state_dir), tie_to_parent=tie_to_parent)
    reused = registry.is_up()
    registry.up()
    absent_tags = [tag for tag in DEMO_TAGS if tag not in registry.tags(DEMO_REPOSITORY)]
    if absent_tags:
        registry.push(DEMO_REPOSITORY, absent_tags)
    _say(log, f"registry: {'reusing' if reused else 'started'} docker-registry at "
              f"{registry.host}; {DEMO_REPOSITORY}: pushed {len(absent_tags)} of "
              f"{len(DEMO_TAGS)} sample tags ({time.monotonic() - started:.1f}s)")

    started = time.monotonic()
    _apply(cluster, _installable_manifests(cluster))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *(f"crd/{name}" for name in CRDS), timeout=90)
    demo_samples = samples(f"{registry.host}/{DEMO_REPOSITORY}")
    sample_text = yaml.safe_dump_all(demo_samples, sort_keys=False)
    (state_dir / "demo" / "samples.yaml").write_text(sample_text)
    # The first document alone first: the objects need their namespace to exist.
    _apply(cluster, yaml.safe_dump(demo_samples[0], sort_keys=False))
    cluster.ensure_service_account(DEMO_NAMESPACE, "default")
    _apply(cluster, sample_text, "--force-conflicts")
    kubeconfig = cluster.service_account_kubeconfig(
        CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT, expiration_seconds=TOKEN_SECONDS)
    _say(log, f"applied: manifests/ (CRDs, RBAC, namespace {CONTROLLER_NAMESPACE}; not the "
              f"Deployment), and ImageRepository + ImagePolicy {DEMO_NAMESPACE}/{DEMO_NAME} "
              f"({time.monotonic() - started:.1f}s)")
    return Demo(state_dir, cluster, registry, kubeconfig)


def down(state_dir: Path) -> None:
    """Stop the demo registry and the cluster by their recorded PIDs; keep the state."""
    LocalRegistry(registry_dir(state_dir)).down()
    Cluster(state_dir).down()


def controller_argv(
    kubeconfig: Path | None,
    *,
    storage_path: str,
    metrics_addr: str,
    health_addr: str,
    log_encoding: str = "console",
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``imagereflector controller`` command ``make run`` runs."""
    argv = [sys.executable, "-m", "imagereflector", "controller"]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    return [*argv, f"--storage-path={storage_path}", f"--log-encoding={log_encoding}",
            f"--metrics-addr={metrics_addr}", f"--health-addr={health_addr}", *extra]


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it, for short lines."""
    try:
        return f"$PWD/{path.resolve().relative_to(Path.cwd().resolve())}"
    except ValueError:
        return str(path)


def instructions(demo: Demo, *, storage_path: str, metrics_addr: str,
                 health_addr: str) -> str:
    """What ``make run`` prints before the controller starts: what runs, how to look."""
    bins = demo.cluster.bin_dir
    state = _shown(demo.state_dir)
    default = demo.state_dir == DEFAULT_STATE_DIR.resolve()
    state_flag = "" if default else f" --state-dir {state}"
    ns = DEMO_NAMESPACE
    return "\n".join([
        "",
        "The demo is up:",
        f"  API server  {demo.cluster.server}  (etcd + kube-apiserver, state in {state})",
        f"  registry    {demo.registry.host}  (docker-registry; {DEMO_REPOSITORY}: "
        f"{', '.join(DEMO_TAGS)})",
        f"  samples     ImageRepository and ImagePolicy {ns}/{DEMO_NAME} "
        f"(semver '{DEMO_RANGE}', scanned every {DEMO_INTERVAL})",
        f"  controller  as ServiceAccount {CONTROLLER_NAMESPACE}/"
        f"{CONTROLLER_SERVICE_ACCOUNT}; metrics http://{metrics_addr}/metrics, "
        f"probes http://{health_addr}/readyz, tag store {storage_path}",
        "",
        "Look at it from another terminal in this directory:",
        f"  export KUBECONFIG={state}/kubeconfig PATH={bins}:$PATH",
        "  kubectl get imagerepositories,imagepolicies -A",
        f"  kubectl events -n {ns} --for imagerepository/{DEMO_NAME}",
        f"  .venv/bin/python -m testbed demo push {NEXT_TAG}{state_flag}"
        "    # a new tag in the local registry",
        f"  flux reconcile image repository {DEMO_NAME} -n {ns}"
        f"    # rescan now instead of within {DEMO_INTERVAL}",
        f"  kubectl get imagepolicy {DEMO_NAME} -n {ns}"
        f"    # LATESTIMAGE moves to {demo.image}:{NEXT_TAG}",
        "",
        "Ctrl-C stops the controller; `make cluster-down` stops the API server, etcd "
        "and the registry.",
        "",
    ])


def ensure_registry_program(log: TextIO) -> None:
    """Install Debian's docker-registry when it is missing (the demo's one apt need).

    The package enables a system service on port 5000 of every interface where systemd
    runs; the demo starts its own registry on loopback, so that service is disabled.
    """
    if find_program() is not None:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    _say(log, f"installing the Debian package {DEBIAN_PACKAGE} for the demo's registry")
    subprocess.run([*apt, "update", "-qq"], check=True)
    subprocess.run([*apt, "install", "-y", "-qq", "--no-install-recommends", DEBIAN_PACKAGE],
                   check=True)
    if Path("/run/systemd/system").is_dir():
        _say(log, "disabling its system service (it would listen on *:5000)")
        subprocess.run([*sudo, "systemctl", "disable", "--now", "docker-registry.service"],
                       check=False)


# --- command line --------------------------------------------------------------------------


def use_demo(probe: Probe, state_dir: Path) -> bool:
    """Whether ``make run`` brings up the demo rather than use the current cluster.

    The demo when no cluster answers, and also when the configuration is the demo's own
    kubeconfig (``KUBECONFIG`` exported from its instructions): that cluster exists for
    the demo, and the demo's path reuses it and re-applies the samples.
    """
    if not probe.reachable:
        return True
    own = (state_dir.resolve() / "kubeconfig")
    return probe.kubeconfig is not None and probe.kubeconfig.resolve() == own


def _exec(argv: list[str]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    # Replaced, not a child: Ctrl-C and SIGTERM reach the controller itself, which
    # drains and closes its store, and its exit status is make's.
    os.execv(argv[0], argv)  # noqa: S606 (argv is our own venv's python and flags)


def run(argv: Sequence[str]) -> int:
    """``python -m testbed run``: what ``make run`` runs."""
    parser = argparse.ArgumentParser(prog="python -m testbed run")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--storage-path", default="./data")
    parser.add_argument("--metrics-addr", default="127.0.0.1:8080")
    parser.add_argument("--health-addr", default="127.0.0.1:9440")
    args = parser.parse_args(list(argv))
    log = sys.stderr
    flags = {"storage_path": args.storage_path, "metrics_addr": args.metrics_addr,
             "health_addr": args.health_addr}
    probe = probe_current_cluster()
    if not use_demo(probe, args.state_dir):
        _say(log, f"make run: the cluster of {probe.source} answers ({probe.server}, "
                  f"{probe.detail}); running the controller against it")
        install = subprocess.run([sys.executable, "-m", "imagereflector", "install-crds"],
                                 check=False)
        if install.returncode != 0:
            return install.returncode
        return _exec(controller_argv(None, **flags))
    why = "is the demo's own" if probe.reachable else f"does not answer ({probe.detail})"
    _say(log, f"make run: the cluster of {probe.source} {why}: using the local demo in "
              f"{_shown(args.state_dir)} (`make cluster-down` stops it)")
    try:
        ensure_registry_program(log)
        demo = bring_up(args.state_dir, log=log)
    except (BuildError, ClusterError, RegistryError, subprocess.CalledProcessError) as exc:
        _say(log, f"make run: the demo did not come up: {exc}")
        return 1
    except KeyboardInterrupt:
        # Ctrl-C during the long first build: a line, not a traceback. The build keeps
        # nothing half-written, and whatever was started is reused by the next run.
        _say(log, "\nmake run: interrupted; `make run` continues where this stopped, "
                  "`make cluster-down` stops what was started")
        return 130
    sys.stdout.write(instructions(demo, **flags))
    return _exec(controller_argv(demo.controller_kubeconfig, **flags))


def demo_main(argv: Sequence[str]) -> int:
    """``python -m testbed demo up|down|push TAG...|status [--state-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m testbed demo")
    parser.add_argument("action", choices=["up", "down", "push", "status"])
    parser.add_argument("tags", nargs="*", help="for push: the tags to push")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(list(argv))
    state_dir: Path = args.state_dir
    if args.action != "push" and args.tags:
        parser.error(f"{args.action} takes no tags")
    if args.action == "down":
        down(state_dir)
        sys.stdout.write(f"stopped the registry and the cluster of {state_dir.resolve()}\n")
        return 0
    registry = LocalRegistry(registry_dir(state_dir))
    if args.action == "status":
        cluster = Cluster(state_dir)
        states = {"cluster": cluster.is_up(), "registry": registry.is_up()}
        sys.stdout.write(" ".join(f"{k}={'up' if v else 'down'}" for k, v in states.items())
                         + "\n")
        return 0 if all(states.values()) else 1
    try:
        if args.action == "push":
            if not args.tags:
                parser.error("push needs at least one tag")
            if not registry.is_up():
                sys.stderr.write("the demo registry is not running: `make run` starts it\n")
                return 1
            for tag, digest in registry.push(DEMO_REPOSITORY, args.tags).items():
                sys.stdout.write(f"pushed {registry.host}/{DEMO_REPOSITORY}:{tag} {digest}\n")
            return 0
        ensure_registry_program(sys.stderr)
        demo = bring_up(state_dir, log=sys.stderr)
    except (BuildError, ClusterError, RegistryError, subprocess.CalledProcessError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(f"export KUBECONFIG={demo.cluster.kubeconfig}\n")
    return 0
