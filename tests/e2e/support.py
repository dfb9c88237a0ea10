"""What the end-to-end tests share: the real CLIs, the controller process, object builders.

Role: run the programs a user runs (the kubectl v1.37.2 and flux v2.2.3 the test bed
builds, never the Debian kubectl, which is too old for ``kubectl events``) against the
session cluster with ``manifests/`` applied, and ``imagereflector controller`` as a child
process speaking as the manifests' ServiceAccount.

Invariants:

- One controller per test module, with a ``--watch-label-selector`` unique to that
  module; every object a test wants reconciled carries that label, so controllers of
  other modules sharing the session cluster never touch it (and this one never touches
  theirs).
- Every wait is on a condition with a deadline (``kubectl wait`` or a poll that gives
  up); a failure message carries the end of the controller's log.
- The controller is stopped with SIGTERM by its PID at module teardown, and must exit 0
  (it drains and closes its store); it dies with the test process if that is killed.
- The CLIs' discovery caches go to a temp dir, not to ``~/.kube/cache``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed.cluster import Cluster, die_with_parent
from testbed.pytest_plugin import Installed

GROUP_VERSION = "image.toolkit.fluxcd.io/v1beta2"
LABEL_KEY = "e2e.imagereflector.dev/module"
WAIT = "--timeout=60s"  # what every `kubectl wait` gets: generous, never reached when fine


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without proxies (loopback only) and without in-cluster hints."""
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env.update(extra)
    return env


@dataclass
class Controller:
    """``imagereflector controller`` as a child process, watching ``label`` only."""

    process: subprocess.Popen[bytes]
    log: Path
    label: dict[str, str]

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM by PID, as a kubelet would; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_controller(installed: Installed, workdir: Path, module: str,
                     extra_args: Sequence[str] = ()) -> Controller:
    """Start the controller as the manifests' ServiceAccount, for one module's objects,
    with ``extra_args`` after the usual flags."""
    stem = re.sub(r"[^a-z0-9-]+", "-", module.rsplit(".", 1)[-1].lower()).strip("-")[:40]
    label = {LABEL_KEY: f"{stem}-{secrets.token_hex(4)}"}
    log = workdir / "controller.log"
    argv = [
        sys.executable, "-m", "imagereflector", "controller",
        f"--kubeconfig={installed.controller_kubeconfig}",
        f"--storage-path={workdir / 'data'}",
        "--metrics-addr=127.0.0.1:0", "--health-addr=127.0.0.1:0",
        f"--watch-label-selector={LABEL_KEY}={label[LABEL_KEY]}",
        "--log-encoding=json",
        # A policy that came before its repository's first scan retries soon.
        "--max-retry-delay=5s",
        *extra_args,
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            env=clean_env(), cwd=workdir, preexec_fn=die_with_parent)
    return Controller(process, log, label)


@dataclass
class Cli:
    """The built kubectl and flux against the session cluster, as its admin."""

    cluster: Cluster
    cache_dir: Path
    controller: Controller | None = None
    env: dict[str, str] = field(default_factory=clean_env)
    flux_binary: Path | None = None
    """Another ``flux`` than the test bed's Flux 2.2.3 one (e.g. the newest Flux's)."""

    def _run(self, program: str, args: tuple[str, ...], *, check: bool, timeout: float,
             input_text: str | None) -> subprocess.CompletedProcess[str]:
        binary = (self.flux_binary if program == "flux" and self.flux_binary is not None
                  else self.cluster.binary(program))
        argv = [str(binary), f"--kubeconfig={self.cluster.kubeconfig}",
                f"--cache-dir={self.cache_dir}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, input=input_text,
                              timeout=timeout, env=self.env, check=False)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{program} {' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}\n{self.controller_tail()}")
        return done

    def kubectl(self, *args: str, check: bool = True, timeout: float = 90.0,
                input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return self._run("kubectl", args, check=check, timeout=timeout, input_text=input_text)

    def flux(self, *args: str, check: bool = True,
             timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        # flux waits up to --timeout itself; a broken controller fails it in a minute.
        return self._run("flux", ("--timeout=60s", *args), check=check, timeout=timeout,
                         input_text=None)

    def controller_tail(self) -> str:
        if self.controller is None:
            return ""
        alive = self.controller.process.poll() is None
        state = "running" if alive else f"exited {self.controller.process.returncode}"
        return f"controller ({state}), last lines:\n{self.controller.tail()}"

    def apply(self, *objects: Mapping[str, Any]) -> None:
        self.kubectl("apply", "--server-side", "-f", "-",
                     input_text=yaml.safe_dump_all(list(objects), sort_keys=False))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        done = self.kubectl("get", f"{kind}/{name}", "-n", namespace, "-o", "json")
        parsed: dict[str, Any] = json.loads(done.stdout)
        return parsed

    def wait_for(self, namespace: str, what: str, condition: str) -> None:
        """``kubectl wait --for=<condition> <what>``: the condition, or fail in 60 s."""
        self.kubectl("wait", f"--for={condition}", what, "-n", namespace, WAIT, timeout=90)

    def wait_for_event(self, namespace: str, ref: str, *needles: str,
                       within: float = 30.0) -> str:
        """``kubectl events --for <ref>`` until one line holds every needle; that line."""
        deadline = time.monotonic() + within
        out = ""
        while time.monotonic() < deadline:
            out = self.kubectl("events", "-n", namespace, "--for", ref).stdout
            for line in out.splitlines():
                if all(needle in line for needle in needles):
                    return line
            time.sleep(0.2)
        raise AssertionError(f"no event {needles} for {ref} within {within}s:\n{out}\n"
                             f"{self.controller_tail()}")


def headers(table: str) -> list[str]:
    """The column headers of kubectl's table output (``LAST SCAN`` is one header)."""
    return re.split(r"\s{2,}", table.splitlines()[0].strip())


def columns(table: str) -> Iterator[dict[str, str]]:
    """The rows of kubectl's table output, keyed by header.

    Cells are cut at the headers' offsets: kubectl left-aligns every column under its
    header, and a cell may be empty (no scan yet) or hold single spaces (a message).
    """
    lines = [line for line in table.splitlines() if line.strip()]
    names = headers(lines[0])
    starts: list[int] = []
    for name in names:
        starts.append(lines[0].index(name, starts[-1] if starts else 0))
    ends = [*starts[1:], None]
    for line in lines[1:]:
        yield {name: line[start:end].strip()
               for name, start, end in zip(names, starts, ends, strict=True)}


def repository(name: str, namespace: str, image: str, labels: Mapping[str, str],
               **spec: Any) -> dict[str, Any]:
    return {"apiVersion": GROUP_VERSION, "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"image": image, "interval": "10m", **spec}}


def policy(name: str, namespace: str, repository_name: str, labels: Mapping[str, str],
           semver: str) -> dict[str, Any]:
    return {"apiVersion": GROUP_VERSION, "kind": "ImagePolicy",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"imageRepositoryRef": {"name": repository_name},
                     "policy": {"semver": {"range": semver}}}}
