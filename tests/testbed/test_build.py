"""The build cache's promises, without compiling anything.

A cache key that follows the pins, a warm cache that never runs ``go``, the local
module proxy seed, and the pin-only tool modules themselves.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from testbed import build
from testbed.build import REPO_ROOT, TARGETS, Binary, GoModule, Seed, Target


def _module(tmp_path: Path, version: str = "v1.2.3") -> GoModule:
    directory = tmp_path / "tools" / "demo"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "go.mod").write_text(
        f"module example.test/demo\n\ngo 1.26.0\n\nrequire example.com/thing {version}\n"
    )
    (directory / "go.sum").write_text("example.com/thing h1:abc=\n")
    return GoModule(directory)


def _target(module: GoModule) -> Target:
    return Target(
        name="demo", group="demo", label_module="example.com/thing", label_from=module,
        binaries=(Binary("thing", module, "example.com/thing/cmd/thing"),),
    )


@pytest.fixture
def in_tmp_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(build, "REPO_ROOT", tmp_path)
    return tmp_path


def test_bin_dir_names_the_release_and_changes_with_any_pin(in_tmp_repo: Path) -> None:
    module = _module(in_tmp_repo)
    target = _target(module)
    first = target.bin_dir(in_tmp_repo / "cache")
    assert first.name == "bin"
    assert first.parent.name.startswith("v1.2.3-")
    assert first == target.bin_dir(in_tmp_repo / "cache")  # stable while pins are
    (module.directory / "go.sum").write_text("example.com/thing h1:other=\n")
    assert target.bin_dir(in_tmp_repo / "cache") != first  # a go.sum change moves it
    _module(in_tmp_repo, "v1.2.4")
    moved = target.bin_dir(in_tmp_repo / "cache")
    assert moved.parent.name.startswith("v1.2.4-")


def test_warm_cache_never_runs_go(in_tmp_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _target(_module(in_tmp_repo))
    monkeypatch.setitem(TARGETS, "demo", target)
    root = in_tmp_repo / "cache"
    directory = target.bin_dir(root)
    directory.mkdir(parents=True)
    program = directory / "thing"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)

    def no_go() -> str:
        raise AssertionError("go must not run when every binary exists")

    monkeypatch.setattr(build, "find_go", no_go)
    assert build.ensure_built("demo", root=root, log=io.StringIO()) == directory


def test_missing_go_is_a_build_error(in_tmp_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _target(_module(in_tmp_repo))
    monkeypatch.setitem(TARGETS, "demo", target)
    monkeypatch.setenv("PATH", str(in_tmp_repo / "empty"))
    monkeypatch.setattr(build, "GO_CANDIDATES", ())
    with pytest.raises(build.BuildError):
        build.ensure_built("demo", root=in_tmp_repo / "cache", log=io.StringIO())


def test_seed_writes_the_zip_its_go_mod_and_an_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("example.com/Some/mod@v0.1.0/go.mod", "module example.com/Some/mod\n")
        archive.writestr("example.com/Some/mod@v0.1.0/main.go", "package main\n")
    requested: list[str] = []

    class Answer(io.BytesIO):
        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *args: object) -> None:
            self.close()

    def fake_urlopen(url: str, timeout: float) -> Answer:
        requested.append(url)
        return Answer(payload.getvalue())

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    seed = Seed("example.com/Some/mod", "v0.1.0")
    proxy = build.seed_local_proxy(seed, tmp_path, "https://proxy.example", io.StringIO())
    version_dir = proxy / "example.com" / "!some" / "mod" / "@v"
    assert requested == ["https://proxy.example/example.com/!some/mod/@v/v0.1.0.zip"]
    assert (version_dir / "v0.1.0.zip").read_bytes() == payload.getvalue()
    assert (version_dir / "v0.1.0.mod").read_text() == "module example.com/Some/mod\n"
    assert json.loads((version_dir / "v0.1.0.info").read_text()) == {"Version": "v0.1.0"}
    # Seeded once: a second call does not download again.
    build.seed_local_proxy(seed, tmp_path, "https://proxy.example", io.StringIO())
    assert len(requested) == 1


def test_kubernetes_ldflags_stamp_the_release() -> None:
    binary = TARGETS["controlplane"].binaries[0]
    flags = build._ldflags(binary, {"Version": "v1.37.2", "Time": "2026-01-02T03:04:05Z",
                                    "Hash": "abc"})
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.37.2" in flags
        assert f"-X {package}.gitMinor=37" in flags
        assert f"-X {package}.buildDate=2026-01-02T03:04:05Z" in flags


# --- the tool modules themselves --------------------------------------------------------

TOOL_MODULES = sorted(p.parent for p in (REPO_ROOT / "tools").glob("*/go.mod"))


def test_tool_modules_hold_pins_only() -> None:
    assert {p.name for p in TOOL_MODULES} == {"controlplane", "flux-v2.2", "flux-latest"}
    for module in TOOL_MODULES:
        assert sorted(p.name for p in module.iterdir()) == ["go.mod", "go.sum"], module
        assert re.search(r"^tool \($", (module / "go.mod").read_text(), re.M), module


def test_controlplane_pins_every_staging_module_at_the_release() -> None:
    text = (REPO_ROOT / "tools" / "controlplane" / "go.mod").read_text()
    release = TARGETS["controlplane"].release()
    staging = "v0." + release.removeprefix("v1.")
    replaced = re.findall(r"^\s+(k8s\.io/[\w-]+) => (k8s\.io/[\w-]+) (v\S+)$", text, re.M)
    assert replaced, "no staging replace lines"
    for source, dest, version in replaced:
        assert source == dest
        assert version == staging, f"{source} at {version}, not {staging}"


def test_go_mod_verify_passes_for_every_tool_module() -> None:
    go = build.find_go()  # no Go is a failure here: the control plane needs it too
    for module in TOOL_MODULES:
        seeds = _seeds(module.name)
        env = build._go_env(go, GoModule(module, seeds=seeds), build.cache_root())
        for seed in seeds:  # the module graph needs the seeded go.mod; a no-op when present
            build.seed_local_proxy(seed, build.cache_root(), build._upstream_proxy(env),
                                   io.StringIO())
        done = subprocess.run([go, "mod", "verify"], cwd=module, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{module}: {done.stdout}{done.stderr}"


def _seeds(name: str) -> tuple[Seed, ...]:
    for target in TARGETS.values():
        for binary in target.binaries:
            if binary.module.directory.name == name:
                return binary.module.seeds
    return ()


def test_the_product_never_imports_testbed() -> None:
    for path in (REPO_ROOT / "imagereflector").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "testbed" or n.startswith("testbed.") for n in names), path
