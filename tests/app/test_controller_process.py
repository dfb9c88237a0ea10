"""``imagereflector controller`` and ``install-crds`` as processes, as an operator runs them.

The controller runs against the real API server with the manifests' ServiceAccount
kubeconfig (https, the cluster's CA, a bearer token). ``install-crds`` creating missing
CRDs runs against the fake API server: the session cluster has the CRDs installed
(``kube_installed``), and a second API server for one test is what the suite avoids.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.controllers.harness import is_ready_with, repository
from tests.controllers.realharness import REPOS, KubeTest
from tests.fakes.kubeapi import running_kubeapi
from tests.fakes.registry import RegistryProcess, free_port


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(extra)
    return env


async def test_install_crds_creates_missing_then_leaves_them(tmp_path: Path) -> None:
    async with running_kubeapi() as api:
        kubeconfig = str(api.write_kubeconfig(tmp_path / "kubeconfig"))
        for expected in ("created CustomResourceDefinition imagerepositories.",
                         "CustomResourceDefinitions already present"):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "imagereflector", "install-crds", "--kubeconfig",
                kubeconfig, env=clean_env(), stdout=asyncio.subprocess.PIPE)
            out, _ = await process.communicate()
            assert process.returncode == 0
            assert expected in out.decode()
        assert api.get("customresourcedefinitions", None,
                       "imagepolicies.image.toolkit.fluxcd.io") is not None


async def test_install_crds_says_what_to_do_without_a_cluster(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "users: [{name: u, user: {token: t}}]\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imagereflector", "install-crds", env=clean_env(
            KUBECONFIG=str(kubeconfig)), stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    assert process.returncode == 1
    text = err.decode()
    assert "did not answer" in text
    assert "check that the cluster of your current kubeconfig context is running" in text
    assert "Traceback" not in text


async def wait_http(url: str, status: int = 200) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(500):
            try:
                async with session.get(url) as resp:
                    if resp.status == status:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never answered {status}")


async def test_controller_serves_probes_and_drains_on_sigterm(registry: RegistryProcess,
                                                              kube: KubeTest,
                                                              tmp_path: Path) -> None:
    registry.write_tags("app", ["a", "b"])
    metrics_port, health_port = free_port(), free_port()
    kube.api.create(repository("app", f"{registry.host}/app"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imagereflector", "controller",
        "--kubeconfig", str(kube.installed.controller_kubeconfig),
        f"--storage-path={tmp_path / 'data'}", f"--metrics-addr=127.0.0.1:{metrics_port}",
        f"--health-addr=127.0.0.1:{health_port}", "--log-encoding=json",
        f"--watch-label-selector={kube.selector}", env=clean_env(),
        stderr=asyncio.subprocess.PIPE)
    try:
        await wait_http(f"http://127.0.0.1:{health_port}/healthz")
        await wait_http(f"http://127.0.0.1:{health_port}/readyz")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            obj = await kube.api.aget(REPOS, kube.ns, "app")
            if obj is not None and is_ready_with("found 2 tags")(obj):
                break
            assert loop.time() < deadline, "repository never became ready"
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert b'"msg":"stopped"' in err
    database = tmp_path / "data" / "tags.db"
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    # A clean close checkpoints the WAL into the database file.
    wal = database.with_name("tags.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0


@pytest.mark.parametrize("case", ["missing", "garbage", "no-context"])
async def test_an_unusable_kubeconfig_is_one_clear_line_and_exit_1(tmp_path: Path,
                                                                   case: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    if case == "garbage":
        kubeconfig.write_text("clusters: [\n")
    elif case == "no-context":
        kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    env = clean_env(KUBECONFIG=str(kubeconfig), HOME=str(tmp_path))
    for command in (["controller", "--storage-path", str(tmp_path / "data"),
                     "--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0"],
                    ["install-crds"]):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "imagereflector", *command, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        text = out.decode() + err.decode()
        assert process.returncode == 1, text
        assert "Traceback" not in text
        assert "Config not found" not in text
        assert "Invalid kube-config file" not in text or case == "no-context"
        assert len(text.strip().splitlines()) == 1, text
        if case == "missing":
            assert f"no kubeconfig at {kubeconfig} (KUBECONFIG)" in text
        else:
            assert f"cannot use kubeconfig {kubeconfig}" in text
