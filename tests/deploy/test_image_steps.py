"""The Dockerfile's build and install steps, run without Docker (none runs here or in CI).

What ``test_image_install_steps`` proves, step by step as the Dockerfile does them:

* the build context ``.dockerignore`` admits (computed here with Docker's matching rules)
  is enough to build the wheel with the Dockerfile's own ``pip wheel`` command, and holds
  no local state (``.venv``, ``tests``, caches);
* that wheel installs into a fresh virtual environment, and its ``imagereflector``
  console script runs ``controller --help`` (every controller flag present) and a real
  ``scan`` against a real local registry, storing the result under a ``--storage-path``;
* at run time nothing is written into the installed environment (the image's read-only
  root filesystem): the environment's file tree is identical before and after, with
  ``PYTHONDONTWRITEBYTECODE=1`` and ``HOME`` pointing elsewhere, as in the image.

What it cannot prove: the dependencies are not downloaded into the fresh environment
(they are taken from the project's ``.venv`` through a ``.pth`` file, so versions match
``pip check`` but wheels for ``python:3.11-slim`` are not fetched), the base image's
system libraries, and the image's user and file ownership. Building the wheel uses pip's
build isolation, so setuptools comes from PyPI (or pip's cache) exactly as in
``docker build``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import sysconfig
from pathlib import Path

from imagereflector.cli import build_parser
from tests.deploy.conftest import ROOT
from tests.fakes.registry import RegistryProcess

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PIP_WHEEL = "pip wheel --no-deps --wheel-dir /wheels ."
VENV_INSTALL = "python -m venv /opt/imagereflector"


def dockerignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per line, with Docker's syntax: ``*``, ``?``, ``**``, ``!``."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((exclude, re.compile(regex + "$")))
    return rules


def admitted(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    keep = True
    for exclude, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            keep = not exclude
    return keep


def build_context(destination: Path) -> list[str]:
    """Copy what ``docker build .`` would send; returns the relative paths copied."""
    rules = dockerignore_patterns(DOCKERIGNORE.read_text())
    copied = []
    for directory, subdirs, files in os.walk(ROOT):
        rel_dir = Path(directory).relative_to(ROOT).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        # Local state is large (.venv) and never admitted: do not even walk it.
        subdirs[:] = [d for d in subdirs if d not in (".git", ".venv")]
        for name in files:
            rel = rel_dir + name
            if admitted(rel, rules):
                target = destination / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, target)
                copied.append(rel)
    return sorted(copied)


def snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``tree`` with its size and modification time."""
    out = {}
    for path in tree.rglob("*"):
        if path.is_file() or path.is_symlink():
            stat = path.lstat()
            out[path.relative_to(tree).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return out


async def run(*argv: str | Path, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *(str(a) for a in argv), env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def base_env(tmp: Path) -> dict[str, str]:
    """A clean environment: no proxies, no PYTHONPATH, HOME and TMPDIR in ``tmp``."""
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    for sub in ("home", "tmp"):
        (tmp / sub).mkdir(exist_ok=True)
    env.update(HOME=str(tmp / "home"), TMPDIR=str(tmp / "tmp"), PYTHONDONTWRITEBYTECODE="1")
    return env


def test_dockerfile_facts() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines()
                    if line and not line.startswith((" ", "#"))]
    froms = [line for line in instructions if line.startswith("FROM ")]
    assert froms == ["FROM python:3.11-slim AS builder", "FROM python:3.11-slim"]
    assert f"RUN {PIP_WHEEL}" in instructions
    assert f"RUN {VENV_INSTALL} \\" in instructions
    final = text.split("FROM python:3.11-slim\n", 1)[1]
    assert re.search(r"^USER 65534:65534$", final, flags=re.MULTILINE)
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp", "TMPDIR=/tmp",
                    "PATH=/opt/imagereflector/bin:$PATH"):
        assert setting in final
    assert final.rstrip().endswith('ENTRYPOINT ["imagereflector", "controller"]')


def test_dockerignore_matching_follows_docker_rules() -> None:
    rules = dockerignore_patterns("*\n!src\n**/__pycache__\n")
    assert admitted("src/a.py", rules)
    assert not admitted("src/__pycache__/a.pyc", rules)
    assert not admitted(".venv/bin/python", rules)
    assert not admitted("README.md", rules)


def test_build_context_is_the_package_sources_only(tmp_path: Path) -> None:
    copied = build_context(tmp_path)
    assert {"pyproject.toml", "README.md", "imagereflector/cli.py",
            "imagereflector/py.typed"} <= set(copied)
    assert all(path.startswith("imagereflector/") or path in ("pyproject.toml", "README.md")
               for path in copied), copied
    assert not any("__pycache__" in path or path.endswith(".pyc") for path in copied)


async def test_image_install_steps(tmp_path: Path, registry: RegistryProcess) -> None:
    env = base_env(tmp_path)
    context, wheels, venv, work = (tmp_path / n for n in ("context", "wheels", "venv", "work"))
    work.mkdir()
    build_context(context)

    # Builder stage: the Dockerfile's `pip wheel` with the wheel directory moved.
    code, _, err = await run(sys.executable, "-m", *PIP_WHEEL.replace("/wheels", str(wheels))
                             .replace(" .", f" {context}").split(), env=env, cwd=context)
    assert code == 0, err
    built = sorted(wheels.glob("imagereflector-*.whl"))
    assert len(built) == 1, sorted(wheels.iterdir())

    # Final stage: a fresh venv and the wheel (dependencies: see the module docstring).
    code, _, err = await run(sys.executable, "-m", "venv", "--without-pip", venv,
                             env=env, cwd=work)
    assert code == 0, err
    python = venv / "bin" / "python"
    code, _, err = await run(sys.executable, "-m", "pip", "--python", python, "install",
                             "--no-deps", "--no-index", built[0], env=env, cwd=work)
    assert code == 0, err
    code, purelib, err = await run(python, "-c",
                                   "import sysconfig; print(sysconfig.get_path('purelib'))",
                                   env=env, cwd=work)
    assert code == 0, err
    (Path(purelib.strip()) / "zz_project_dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n")
    code, out, err = await run(sys.executable, "-m", "pip", "--python", python, "check",
                               env=env, cwd=work)
    assert code == 0, out + err

    before = snapshot(venv)
    # The package comes from the wheel, not from the source tree.
    code, out, err = await run(python, "-c", "import imagereflector, json, sys; print(json.dumps("
                               "[imagereflector.__file__, sys.path]))", env=env, cwd=work)
    assert code == 0, err
    module_file, path = json.loads(out)
    assert Path(module_file).is_relative_to(venv)
    assert str(ROOT) not in path

    script = venv / "bin" / "imagereflector"
    code, out, err = await run(script, "controller", "--help", env=env, cwd=work)
    assert code == 0, err
    controller = next(a for a in build_parser()._actions
                      if a.dest == "command").choices["controller"]  # type: ignore[index]
    flags = {s for a in controller._actions for s in a.option_strings
             if s.startswith("--")}
    assert {f for f in flags if f not in out} == set()

    registry.write_tags("team/app", ["1.0.0", "1.1.0", "2.0.0.sig"])
    data = tmp_path / "data"
    code, out, err = await run(script, "scan", f"{registry.host}/team/app", "-o", "json",
                               "--storage-path", data, env=env, cwd=work)
    assert code == 0, err
    status = json.loads(out)
    assert status["lastScanResult"]["tagCount"] == 2
    assert status["lastScanResult"]["latestTags"] == ["1.1.0", "1.0.0"]
    assert (data / "tags.db").is_file()

    assert snapshot(venv) == before, "running wrote into the installed environment"
