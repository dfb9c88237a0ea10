"""Build the real Kubernetes and Flux programs from the pins in ``tools/*/go.mod``.

Role: turn the three pin-only Go modules under ``tools/`` into binaries in a per-user
cache, ``${XDG_CACHE_HOME:-~/.cache}/imagereflector/``:

- ``controlplane/<k8s release>-<pins>/bin``: kube-apiserver, kubectl, etcd (from
  ``tools/controlplane``) and the Flux 2.2 CLI as ``flux`` (from ``tools/flux-v2.2``);
- ``flux/<flux release>-<pins>/bin``: ``flux`` and ``image-reflector-controller`` of one
  Flux line (``tools/flux-v2.2``: Flux v2.2.3 with the controller v0.31.0;
  ``tools/flux-latest``: the newest Flux and controller v1.x the module proxy serves).

Invariants:

- A binary in the cache always matches the pins it was built from: the directory name
  carries the pinned release and a digest of every ``go.mod``/``go.sum`` that went into
  it, so changing a pin moves to a new directory and a stale binary is never used.
- A warm cache costs no ``go`` invocation: binaries that exist are never rebuilt.
- A binary appears under its final name only when complete (built under a temporary
  name, then renamed), and one build per target runs at a time (an ``flock``), so an
  interrupted or concurrent build never leaves a half-written program behind.
- Module sources are checked by the go command against ``go.sum`` and the checksum
  database as usual; nothing here weakens that (no GONOSUMDB, no -insecure).

One module version is not fully served by the module proxy: the proxy answers 403 for
the ``.mod`` of image-reflector-controller v0.31.0 but serves its ``.zip``, and the
checksum database knows both hashes. ``seed_local_proxy`` puts that zip, the go.mod
inside it and a ``.info`` into a file-based GOPROXY directory in the cache, listed
before the real proxy, so the go command verifies both files against ``go.sum`` and the
checksum database exactly as it would had the proxy served them (see docs/testbed.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = REPO_ROOT / "tools"
DEFAULT_GOPROXY = "https://proxy.golang.org"

# How often a running build reports progress; often enough that a CI log shows life,
# rarely enough that a 20-minute build is a screenful.
PROGRESS_INTERVAL_S = 15.0


class BuildError(RuntimeError):
    """A binary could not be built (no Go toolchain, a module not served, a compile error)."""


# --- what is built -------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """A module version the proxy serves only as a zip (its ``.mod`` answers 403)."""

    module: str
    version: str


@dataclass(frozen=True)
class GoModule:
    """One pin-only module under ``tools/``."""

    directory: Path
    seeds: tuple[Seed, ...] = ()
    # The only toolchain other than the machine's that may be used is go1.27.3 (taken
    # from the module proxy); None means the machine's own Go (GOTOOLCHAIN=local).
    toolchain: str | None = None

    def pin_files(self) -> list[Path]:
        return [self.directory / "go.mod", self.directory / "go.sum"]

    def required_version(self, module: str) -> str:
        """The version of ``module`` that go.mod requires (after MVS, as `go mod tidy` wrote)."""
        text = (self.directory / "go.mod").read_text(encoding="utf-8")
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
        if match is None:
            raise BuildError(f"{self.directory / 'go.mod'} does not require {module}")
        return match.group(1)


@dataclass(frozen=True)
class EmbedStub:
    """A ``//go:embed`` directory that the release process fills and the module lacks.

    The flux CLI embeds ``cmd/flux/manifests/*.yaml``, which Flux's release build
    generates from the controllers' published manifests; the module zip has none, so
    the package does not compile as published. The build copies the module (from the
    verified module cache) to the cache, adds one commented-out YAML file there and
    builds against that copy with a derived ``-modfile``. The committed go.mod stays
    pins only; ``flux install`` and ``flux bootstrap``, the commands that need those
    manifests, have nothing to install in such a build.
    """

    module: str
    directory: str


@dataclass(frozen=True)
class Binary:
    """One program: its file name in the bin dir, its Go package, how to stamp its version."""

    name: str
    module: GoModule
    package: str
    # "kubernetes": -X the version packages kubectl and the API server report from;
    # "flux": -X main.VERSION; None: the program carries its own version.
    stamp: str | None = None
    stamp_module: str = ""
    stub: EmbedStub | None = None


@dataclass(frozen=True)
class Target:
    """A bin directory and the binaries that go into it."""

    name: str
    group: str  # directory under the cache root: "controlplane" or "flux"
    label_module: str  # the pinned module whose version names the directory
    label_from: GoModule
    binaries: tuple[Binary, ...] = field(default=())

    def modules(self) -> list[GoModule]:
        seen: list[GoModule] = []
        for binary in self.binaries:
            if binary.module not in seen:
                seen.append(binary.module)
        return seen

    def pins_digest(self) -> str:
        """A digest of every go.mod and go.sum the binaries are built from."""
        digest = hashlib.sha256()
        for module in self.modules():
            for path in module.pin_files():
                digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
                digest.update(b"\0")
                digest.update(path.read_bytes())
                digest.update(b"\0")
        return digest.hexdigest()[:12]

    def release(self) -> str:
        return self.label_from.required_version(self.label_module)

    def bin_dir(self, root: Path | None = None) -> Path:
        base = root if root is not None else cache_root()
        return base / self.group / f"{self.release()}-{self.pins_digest()}" / "bin"

    def missing(self, root: Path | None = None) -> list[Binary]:
        directory = self.bin_dir(root)
        return [b for b in self.binaries if not os.access(directory / b.name, os.X_OK)]


CONTROLPLANE = GoModule(TOOLS_DIR / "controlplane")
FLUX_V22 = GoModule(
    TOOLS_DIR / "flux-v2.2",
    seeds=(Seed("github.com/fluxcd/image-reflector-controller", "v0.31.0"),),
)
FLUX_LATEST = GoModule(TOOLS_DIR / "flux-latest")

_K8S = "k8s.io/kubernetes"
_FLUX2 = "github.com/fluxcd/flux2/v2"
_IRC = "github.com/fluxcd/image-reflector-controller"
_FLUX_MANIFESTS = EmbedStub(_FLUX2, "cmd/flux/manifests")

TARGETS: dict[str, Target] = {
    "controlplane": Target(
        name="controlplane",
        group="controlplane",
        label_module=_K8S,
        label_from=CONTROLPLANE,
        binaries=(
            Binary("kube-apiserver", CONTROLPLANE, f"{_K8S}/cmd/kube-apiserver", "kubernetes",
                   _K8S),
            Binary("kubectl", CONTROLPLANE, f"{_K8S}/cmd/kubectl", "kubernetes", _K8S),
            Binary("etcd", CONTROLPLANE, "go.etcd.io/etcd/server/v3"),
            Binary("flux", FLUX_V22, f"{_FLUX2}/cmd/flux", "flux", _FLUX2, _FLUX_MANIFESTS),
        ),
    ),
    "flux-v2.2": Target(
        name="flux-v2.2",
        group="flux",
        label_module=_FLUX2,
        label_from=FLUX_V22,
        binaries=(
            Binary("flux", FLUX_V22, f"{_FLUX2}/cmd/flux", "flux", _FLUX2, _FLUX_MANIFESTS),
            Binary("image-reflector-controller", FLUX_V22, _IRC),
        ),
    ),
    "flux-latest": Target(
        name="flux-latest",
        group="flux",
        label_module=_FLUX2,
        label_from=FLUX_LATEST,
        binaries=(
            Binary("flux", FLUX_LATEST, f"{_FLUX2}/cmd/flux", "flux", _FLUX2, _FLUX_MANIFESTS),
            Binary("image-reflector-controller", FLUX_LATEST, _IRC),
        ),
    ),
}

# The command line's names for groups of targets. In "all" the control plane comes last
# so that the last line printed is the bin dir `make cluster` uses.
GROUPS: dict[str, tuple[str, ...]] = {
    "controlplane": ("controlplane",),
    "flux": ("flux-v2.2", "flux-latest"),
    "all": ("flux-v2.2", "flux-latest", "controlplane"),
}


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/imagereflector``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagereflector"


def bin_dir(target: str = "controlplane") -> Path:
    """Where ``target``'s binaries are (or will be) for the current pins."""
    return TARGETS[target].bin_dir()


def missing(target: str = "controlplane") -> list[str]:
    """Names of ``target``'s binaries not yet built for the current pins."""
    return [b.name for b in TARGETS[target].missing()]


# --- the go command ------------------------------------------------------------------


# Where the official Go tarball puts the go command, for shells whose PATH lacks it.
GO_CANDIDATES: tuple[str, ...] = ("/usr/local/go/bin/go",)


def find_go() -> str:
    """The go command: on PATH, else where the official tarball installs it."""
    found = shutil.which("go")
    if found:
        return found
    for candidate in GO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise BuildError("no Go toolchain: `go` is not on PATH nor in /usr/local/go/bin")


def _go_env(go: str, module: GoModule, root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Static binaries: no C toolchain needed, and they run on any glibc.
    env["CGO_ENABLED"] = "0"
    env["GOTOOLCHAIN"] = module.toolchain or "local"
    if module.seeds:
        proxy = env.get("GOPROXY") or _go_env_value(go, "GOPROXY") or DEFAULT_GOPROXY
        local = (root / "goproxy").as_uri()
        if not proxy.startswith(local):
            # "," falls through to the next proxy only on 404/410, which is what a
            # file proxy answers for anything it does not hold.
            env["GOPROXY"] = f"{local},{proxy}"
    return env


def _go_env_value(go: str, name: str) -> str:
    out = subprocess.run(
        [go, "env", name], capture_output=True, text=True, check=False, timeout=60
    )
    return out.stdout.strip()


def _escape_module_path(path: str) -> str:
    """The module proxy protocol's case encoding: an upper-case letter becomes ``!`` + lower."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), path)


def seed_local_proxy(seed: Seed, root: Path, upstream: str, log: TextIO) -> Path:
    """Put ``seed``'s zip (the proxy's own bytes), its go.mod and an .info in a file proxy.

    Returns the file proxy's root. The go command still checks the zip and the go.mod
    against go.sum and the checksum database, so this adds no trust: it only supplies
    the ``.mod`` file the proxy refuses to serve, taken from the zip it does serve.
    """
    proxy_root = root / "goproxy"
    version_dir = proxy_root / _escape_module_path(seed.module) / "@v"
    names = {ext: version_dir / f"{seed.version}.{ext}" for ext in ("info", "mod", "zip")}
    if all(p.is_file() for p in names.values()):
        return proxy_root
    version_dir.mkdir(parents=True, exist_ok=True)
    url = f"{upstream.rstrip('/')}/{_escape_module_path(seed.module)}/@v/{seed.version}.zip"
    log.write(f"seeding the local module proxy with {seed.module}@{seed.version} from {url}\n")
    log.flush()
    if not url.startswith("https://"):
        raise BuildError(f"refusing to fetch {url}: the module proxy must be https")
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (https checked above)
        data: bytes = response.read()
    member = f"{seed.module}@{seed.version}/go.mod"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            gomod = archive.read(member)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise BuildError(f"{url} is not a module zip with {member}: {exc}") from exc
    for ext, content in (
        ("zip", data),
        ("mod", gomod),
        ("info", json.dumps({"Version": seed.version}).encode()),
    ):
        tmp = names[ext].with_suffix(f".{ext}.tmp{os.getpid()}")
        tmp.write_bytes(content)
        tmp.replace(names[ext])
    return proxy_root


def _upstream_proxy(env: Mapping[str, str]) -> str:
    for entry in re.split(r"[,|]", env.get("GOPROXY", DEFAULT_GOPROXY)):
        if entry.startswith("https://"):
            return entry
    return DEFAULT_GOPROXY


def _module_info(go: str, module: GoModule, env: Mapping[str, str], path: str) -> dict[str, str]:
    """``Version``, ``Time`` and (when the proxy recorded it) the commit of a pinned module."""
    out = subprocess.run(
        [go, "mod", "download", "-json", path],
        cwd=module.directory,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    info: dict[str, str] = {}
    with contextlib.suppress(ValueError):
        parsed = json.loads(out.stdout or "{}")
        info["Version"] = str(parsed.get("Version", ""))
        info_file = parsed.get("Info")
        if info_file and Path(info_file).is_file():
            raw = json.loads(Path(info_file).read_text(encoding="utf-8"))
            info["Time"] = str(raw.get("Time", ""))
            origin = raw.get("Origin") or {}
            info["Hash"] = str(origin.get("Hash", ""))
    return info


def _stubbed_modfile(
    go: str, binary: Binary, env: Mapping[str, str], root: Path
) -> Path | None:
    """A go.mod for ``binary``'s build with its EmbedStub module replaced by a filled copy.

    ``None`` when the binary needs no stub. The copy is made once per module version.
    """
    stub = binary.stub
    if stub is None:
        return None
    out = subprocess.run(
        [go, "mod", "download", "-json", stub.module],
        cwd=binary.module.directory, env=dict(env), capture_output=True, text=True,
        check=False, timeout=600,
    )
    try:
        parsed = json.loads(out.stdout)
        source, version = Path(parsed["Dir"]), str(parsed["Version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"go mod download {stub.module}: {out.stderr or out.stdout}") from exc
    copy = root / "src" / f"{_escape_module_path(stub.module)}@{version}"
    if not (copy / stub.directory / "testbed-stub.yaml").is_file():
        tmp = copy.with_name(f"{copy.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        for dirpath, _dirs, _files in os.walk(tmp):  # the module cache is read-only
            os.chmod(dirpath, 0o700)
        (tmp / stub.directory).mkdir(parents=True, exist_ok=True)
        (tmp / stub.directory / "testbed-stub.yaml").write_text(
            "# Placeholder written by testbed/build.py: the published module has no\n"
            "# release manifests to embed, so this build carries none.\n"
        )
        shutil.rmtree(copy, ignore_errors=True)
        tmp.replace(copy)
    gomod = (binary.module.directory / "go.mod").read_text(encoding="utf-8")
    digest = hashlib.sha256(gomod.encode() + str(copy).encode()).hexdigest()[:12]
    modfile_dir = root / "modfiles" / f"{binary.module.directory.name}-{digest}"
    modfile_dir.mkdir(parents=True, exist_ok=True)
    modfile = modfile_dir / "go.mod"
    modfile.write_text(f"{gomod}\nreplace {stub.module} => {copy}\n", encoding="utf-8")
    # -modfile=X.mod reads X.sum: the same checksums as the committed go.sum.
    shutil.copyfile(binary.module.directory / "go.sum", modfile_dir / "go.sum")
    return modfile


def _ldflags(binary: Binary, info: Mapping[str, str]) -> str:
    # -s -w: no symbol table or DWARF; smaller files and a faster link.
    flags = ["-s", "-w"]
    version = info.get("Version", "")
    if binary.stamp == "kubernetes" and version:
        # Without these a module build reports v0.0.0-master, and `kubectl version`
        # could not show which release is pinned. Both packages carry a copy.
        major, minor = version.lstrip("v").split(".")[:2]
        values = {
            "gitVersion": version,
            "gitMajor": major,
            "gitMinor": minor,
            "gitTreeState": "clean",
        }
        if info.get("Hash"):
            values["gitCommit"] = info["Hash"]
        stamp_time = info.get("Time", "")
        if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp_time):
            values["buildDate"] = stamp_time  # the release's tag time, not today's
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    elif binary.stamp == "flux" and version:
        flags.append(f"-X main.VERSION={version.lstrip('v')}")
    return " ".join(flags)


# --- running a build with progress ----------------------------------------------------


def _fmt_elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _run_go_build(
    go: str,
    binary: Binary,
    output: Path,
    env: Mapping[str, str],
    ldflags: str,
    log: TextIO,
    started: float,
    modfile: Path | None = None,
) -> None:
    """``go build -v`` one program, reporting packages compiled and time elapsed."""
    argv = [go, "build", "-v", "-trimpath", f"-ldflags={ldflags}", "-o", str(output)]
    if modfile is not None:
        argv.append(f"-modfile={modfile}")
    argv.append(binary.package)
    proc = subprocess.Popen(
        argv,
        cwd=binary.module.directory,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    compiled = downloads = 0
    other: list[str] = []
    last_report = time.monotonic()
    done = False
    while not done:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            line = ""
        if line is None:
            done = True
        elif line.startswith("go: downloading"):
            downloads += 1
        elif line and re.fullmatch(r"[\w.\-/~+]+", line):
            compiled += 1  # -v names each package as it is compiled
        elif line:
            other.append(line)
        now = time.monotonic()
        if now - last_report >= PROGRESS_INTERVAL_S:
            last_report = now
            log.write(
                f"  {binary.name}: {compiled} packages compiled"
                f"{f', {downloads} modules downloaded' if downloads else ''}"
                f", {_fmt_elapsed(now - started)} elapsed\n"
            )
            log.flush()
    code = proc.wait()
    reader.join()
    if code != 0:
        detail = "\n".join(other[-40:])
        raise BuildError(f"go build {binary.package} failed (exit {code}):\n{detail}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(
    target: str = "controlplane", *, log: TextIO | None = None, root: Path | None = None
) -> Path:
    """Build whatever of ``target`` is missing; return its bin dir.

    Costs a few file checks when everything is there. Raises ``BuildError`` when a
    binary cannot be built.
    """
    out = log if log is not None else sys.stderr
    spec = TARGETS[target]
    base = root if root is not None else cache_root()
    directory = spec.bin_dir(base)
    if not spec.missing(base):
        return directory
    with _locked(directory.parent.with_name(directory.parent.name + ".lock")):
        todo = spec.missing(base)  # another process may have built them meanwhile
        if not todo:
            return directory
        go = find_go()
        directory.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        out.write(
            f"building {target} ({spec.label_module} {spec.release()}): "
            f"{', '.join(b.name for b in todo)} into {directory}\n"
            "  (a one-time build from the Go module proxy; later runs reuse it)\n"
        )
        out.flush()
        infos: dict[tuple[Path, str], dict[str, str]] = {}
        for binary in todo:
            env = _go_env(go, binary.module, base)
            for seed in binary.module.seeds:
                seed_local_proxy(seed, base, _upstream_proxy(env), out)
            key = (binary.module.directory, binary.stamp_module)
            if binary.stamp and key not in infos:
                infos[key] = _module_info(go, binary.module, env, binary.stamp_module)
            one_started = time.monotonic()
            out.write(f"  {binary.name} <- {binary.package}\n")
            out.flush()
            modfile = _stubbed_modfile(go, binary, env, base)
            with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as tmp:
                output = Path(tmp) / binary.name
                _run_go_build(
                    go, binary, output, env, _ldflags(binary, infos.get(key, {})), out,
                    one_started, modfile,
                )
                output.replace(directory / binary.name)
            out.write(
                f"  {binary.name} done in {_fmt_elapsed(time.monotonic() - one_started)}\n"
            )
            out.flush()
        _write_build_info(spec, directory, go, time.monotonic() - started)
        out.write(f"built {target} in {_fmt_elapsed(time.monotonic() - started)}\n")
        out.flush()
    return directory


# Where each Flux line's image-reflector-controller module (its CRDs) is pinned.
FLUX_LINES: dict[str, GoModule] = {"flux-v2.2": FLUX_V22, "flux-latest": FLUX_LATEST}


def flux_crd_dir(line: str, *, log: TextIO | None = None, root: Path | None = None) -> Path:
    """``config/crd/bases`` of the image-reflector-controller pinned for a Flux line
    (``flux-v2.2``: v0.31.0; ``flux-latest``: v1.x), from the Go module cache.

    ``go mod download`` fetches the module when the cache lacks it, checked against the
    line's go.sum as every build is (v0.31.0 through the seeded local proxy). Costs one
    quick ``go`` call when it is there. Raises ``BuildError`` when it cannot be had.
    """
    module = FLUX_LINES[line]
    base = root if root is not None else cache_root()
    go = find_go()
    env = _go_env(go, module, base)
    for seed in module.seeds:
        seed_local_proxy(seed, base, _upstream_proxy(env), log if log is not None else sys.stderr)
    wanted = f"{_IRC}@{module.required_version(_IRC)}"
    done = subprocess.run([go, "mod", "download", "-json", wanted], cwd=module.directory,
                          env=env, capture_output=True, text=True, check=False, timeout=600)
    try:
        directory = Path(json.loads(done.stdout)["Dir"]) / "config" / "crd" / "bases"
    except (ValueError, KeyError) as exc:
        raise BuildError(f"go mod download {wanted} failed: {done.stderr.strip()}") from exc
    if not directory.is_dir():
        raise BuildError(f"{wanted} has no {directory}")
    return directory


def _write_build_info(spec: Target, directory: Path, go: str, seconds: float) -> None:
    """Record which pins and which Go built this directory, for a human looking at it."""
    version = subprocess.run(
        [go, "version"], capture_output=True, text=True, check=False, timeout=60
    ).stdout.strip()
    info = {
        "target": spec.name,
        "release": spec.release(),
        "pins_digest": spec.pins_digest(),
        "modules": [m.directory.relative_to(REPO_ROOT).as_posix() for m in spec.modules()],
        "go": version,
        "last_build_seconds": round(seconds, 1),
    }
    (directory.parent / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")


def build_group(group: str, *, log: TextIO | None = None) -> list[Path]:
    """Build every target of a command-line group; return their bin dirs in order."""
    return [ensure_built(name, log=log) for name in GROUPS[group]]


def main(argv: Sequence[str]) -> int:
    """``python -m testbed build controlplane|flux|all``: bin dirs on stdout, last line last."""
    if len(argv) != 1 or argv[0] not in GROUPS:
        sys.stderr.write(f"usage: python -m testbed build {'|'.join(GROUPS)}\n")
        return 2
    try:
        dirs = build_group(argv[0])
    except BuildError as exc:
        sys.stderr.write(f"build failed: {exc}\n")
        return 1
    for directory in dirs:
        sys.stdout.write(f"{directory}\n")
    return 0
