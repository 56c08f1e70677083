"""`zoo compat`'s runtime environments: the matrix file, and one cached virtual environment per
runtime release holding only that runtime, NumPy and the runner's few extra requirements.

An environment is created only by `zoo compat` (``--prepare``, or a run that needs it, which says what it
installs): built in a temporary folder, proven to import its runtime, then renamed into place with a
``zoo-compat-env.json`` inside, so a half-built one never looks ready. A release pip cannot find for this
Python/platform is remembered as unavailable (``NAME.unavailable.json``), so a warm cache works offline.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from zoo.core.errors import ZooError, nearest
from zoo.core.fsutil import atomic_dir, atomic_write_text, remove_dir, user_cache
from zoo.core.platforms import get_platform

ENV_DIR = "ZOO_COMPAT_DIR"
READY = "zoo-compat-env.json"
MATRIX_NAMES = ("default",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$")
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!-]{0,40}$")
_REQ = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,60}([<>=!~]=?[0-9A-Za-z.*]{1,40})?(,[<>=!~]=?[0-9A-Za-z.*]{1,40})*$")
_NET = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
        "Network is unreachable", "ConnectTimeout", "Read timed out", "ProxyError", "ConnectionError",
        "No route to host", "Name or service not known", "SSLError")


@dataclass(frozen=True)
class EnvSpec:
    """One runtime release to test: ``runtime`` (as registered), ``package==version`` and what goes beside it."""

    runtime: str
    package: str
    version: str
    module: str
    numpy: str = "numpy"
    extra: tuple[str, ...] = ()
    why: str = ""
    rank: int = 1
    deps: bool = True  # False: pip --no-deps (the runtime's declared dependencies are not needed to run it)
    platform: str = ""  # "" this machine; else a zoo.core.platforms name (linux/arm64): that platform's wheels

    @property
    def label(self) -> str:
        return f"{self.runtime}=={self.version}"

    @property
    def requirements(self) -> list[str]:
        return [f"{self.package}=={self.version}", self.numpy, *self.extra]

    def on(self, platform: str) -> "EnvSpec":
        """The same release for another platform ("" for this machine)."""
        return replace(self, platform=platform)

    @property
    def env_name(self) -> str:
        """The cache folder's name: the package release, the Python it is for, the platform when it is
        not this machine's (linux_aarch64) and a short hash of everything installed (two runtimes sharing
        a package share an environment only when they install the same)."""
        what = " ".join(self.requirements) + ("" if self.deps else " --no-deps") + (f" @{self.platform}" if self.platform else "")
        h = hashlib.sha256(what.encode()).hexdigest()[:8]
        plat = f"-{get_platform(self.platform).tag}" if self.platform else ""
        return f"{self.package.lower()}-{self.version}-py{sys.version_info.major}{sys.version_info.minor}{plat}-{h}"

    def sort_key(self) -> tuple:
        return (self.rank, version_key(self.version))


def version_key(v: str) -> tuple:
    """A sortable key for release numbers such as 1.17.3, 1.0.20240410, 4.10.0.84."""
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", v))


def platform_tag() -> str:
    return f"Python {sys.version_info.major}.{sys.version_info.minor}/{sys.platform} {platform.machine()}"


# ---------------------------------------------------------------------------------------------- the matrix file
@dataclass
class Matrix:
    runtimes: dict[str, dict] = field(default_factory=dict)  # name -> {package, module, extra, aliases, versions}

    def spec(self, runtime: str, version: str, package: str | None = None) -> EnvSpec:
        rt = self.runtimes[runtime]
        for v in rt["versions"]:
            if v["version"] == version and (package is None or v["package"] == package):
                return v["spec"]
        pkg = package or rt["package"]
        return EnvSpec(runtime, pkg, version, rt["module"] if pkg == rt["package"] else _module_of(pkg, rt),
                       "numpy", tuple(rt["extra"]), "", 1 if pkg == rt["package"] else 0, rt["deps"])

    def all(self) -> list[EnvSpec]:
        """Every release the matrix file lists, default or not."""
        return [v["spec"] for rt in self.runtimes.values() for v in rt["versions"]]

    def default(self, runtimes: list[str] | None = None) -> list[EnvSpec]:
        return [v["spec"] for name, rt in self.runtimes.items() if runtimes is None or name in runtimes
                for v in rt["versions"] if v["default"]]


def _module_of(package: str, rt: dict) -> str:
    return {"tflite-runtime": "tflite_runtime"}.get(package, package.replace("-", "_"))


def _text(d: dict, key: str, where: str, pattern=None, required=True) -> str | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v.strip():
        raise ZooError(f"{where}: {key!r} must be non-empty text")
    if pattern is not None and not pattern.match(v):
        raise ZooError(f"{where}: {key!r} {v[:60]!r} is not a valid name")
    return v


def parse_matrix(data: dict, source: str = "compat matrix") -> Matrix:
    """The checked matrix from the TOML's data; anything unexpected is a ZooError naming the entry."""
    if not isinstance(data, dict) or data.get("schema") != 1 or not isinstance(data.get("runtime"), dict):
        raise ZooError(f"{source}: expected `schema = 1` and [runtime.NAME] tables")
    m = Matrix()
    for name, rt in data["runtime"].items():
        where = f"{source}: runtime {str(name)[:40]!r}"
        if not isinstance(rt, dict) or not _NAME.match(str(name)):
            raise ZooError(f"{where}: not a table with a valid name")
        package = _text(rt, "package", where, _NAME)
        module = _text(rt, "module", where, re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,60}$"))
        extra, aliases = rt.get("extra", []), rt.get("aliases", [])
        for key, lst in (("extra", extra), ("aliases", aliases)):
            if not isinstance(lst, list) or not all(isinstance(x, str) and _REQ.match(x) for x in lst):
                raise ZooError(f"{where}: {key!r} must be a list of package requirements")
        deps = rt.get("deps", True)
        if not isinstance(deps, bool):
            raise ZooError(f"{where}: 'deps' must be true or false")
        entry = {"package": package, "module": module, "extra": list(extra), "aliases": list(aliases), "deps": deps,
                 "versions": []}
        versions = rt.get("version", [])
        if not isinstance(versions, list):
            raise ZooError(f"{where}: [[runtime.{name}.version]] entries expected")
        seen = set()
        for i, v in enumerate(versions):
            w = f"{where} version #{i + 1}"
            if not isinstance(v, dict):
                raise ZooError(f"{w}: not a table")
            ver = _text(v, "version", w, _VERSION)
            pkg = _text(v, "package", w, _NAME, required=False) or package
            if pkg != package and pkg not in aliases:
                raise ZooError(f"{w}: package {pkg!r} is neither {package!r} nor one of its aliases")
            numpy = _text(v, "numpy", w, _REQ, required=False) or "numpy"
            if not numpy.lower().startswith("numpy"):
                raise ZooError(f"{w}: 'numpy' must be a NumPy requirement such as \"numpy<2\"")
            why = _text(v, "why", w)
            default = v.get("default", True)
            if not isinstance(default, bool):
                raise ZooError(f"{w}: 'default' must be true or false")
            if (pkg, ver) in seen:
                raise ZooError(f"{w}: {pkg}=={ver} is listed twice")
            seen.add((pkg, ver))
            spec = EnvSpec(name, pkg, ver, module if pkg == package else _module_of(pkg, entry), numpy,
                           tuple(extra), why, 1 if pkg == package else 0, deps)
            entry["versions"].append({"version": ver, "package": pkg, "default": default, "spec": spec})
        m.runtimes[name] = entry
    return m


def load_matrix(path: Path | None = None) -> Matrix:
    """The matrix file (default: the packaged zoo/core/data/compat_matrix.toml)."""
    try:
        if path is None:
            text = resources.files("zoo.core").joinpath("data/compat_matrix.toml").read_text(encoding="utf-8")
            source = "zoo/core/data/compat_matrix.toml"
        else:
            text, source = Path(path).read_text(encoding="utf-8"), str(path)
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read the compat matrix {path}: {getattr(e, 'strerror', None) or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ZooError(f"the compat matrix {path or 'file'} is not valid TOML: {e}") from None
    return parse_matrix(data, source)


def parse_runtime_specs(text: str, matrix: Matrix, known: list[str]) -> list[EnvSpec]:
    """``onnxruntime==1.17.3,mnn==3.0.0`` -> specs. Names are the registered runtimes (``known``) or a
    matrix alias (``tflite-runtime==2.14.0``: runtime litert from that package)."""
    out = []
    aliases = {a: name for name, rt in matrix.runtimes.items() for a in rt["aliases"]}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, version = item.partition("==")
        name, version = name.strip(), version.strip()
        if not sep or not version or not _VERSION.match(version):
            raise ZooError(f"--runtime {item!r}: expected NAME==VERSION, e.g. onnxruntime==1.17.3")
        package = None
        if name in aliases:
            name, package = aliases[name], name
        if name not in known:
            raise ZooError(f"unknown runtime {name!r}{nearest(name, known)}; available runtimes: {', '.join(known)}")
        if name not in matrix.runtimes:
            raise ZooError(f"runtime {name!r} has no entry in the compat matrix (package to install unknown)")
        out.append(matrix.spec(name, version, package))
    if not out:
        raise ZooError("--runtime is empty: give NAME==VERSION[,NAME==VERSION...]")
    return out


# ---------------------------------------------------------------------------------------------- environments
def compat_dir() -> Path:
    """Where environments are cached: $ZOO_COMPAT_DIR, else the user cache's compat/."""
    return Path(os.environ[ENV_DIR]).expanduser() if os.environ.get(ENV_DIR) else user_cache("compat")


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def env_state(cache: Path, spec: EnvSpec) -> dict:
    """{"state": "ready", "python": ...} | {"state": "unavailable", "message": ...} | {"state": "missing"}."""
    env = cache / spec.env_name
    ready = env / READY
    # another platform's environment is its packages alone (``site``), run by that platform's interpreter
    if ready.is_file() and (env_python(env).exists() if not spec.platform else (env / "site").is_dir()):
        try:
            info = json.loads(ready.read_text())
        except (OSError, ValueError):
            info = None
        if (isinstance(info, dict) and info.get("requirements") == spec.requirements and info.get("deps", True) == spec.deps
                and info.get("platform", "") == spec.platform):
            return {"state": "ready", "python": str(env_python(env)) if not spec.platform else None, "env": str(env),
                    "info": info}
    marker = cache / f"{spec.env_name}.unavailable.json"
    if marker.is_file():
        try:
            info = json.loads(marker.read_text())
            if isinstance(info, dict) and info.get("requirements") == spec.requirements:
                return {"state": "unavailable", "message": str(info.get("message", ""))[:300],
                        **({"qemu": info["qemu"]} if "qemu" in info else {})}
        except (OSError, ValueError):
            pass
    return {"state": "missing"}


def _pip_failure(log: str, spec: EnvSpec) -> tuple[str, str]:
    """("unavailable" | "error", one line) from pip's output."""
    if any(n in log for n in _NET):
        return "error", "the package index cannot be reached (offline?)"
    m = re.search(r"No matching distribution found for (\S+)", log)
    if m:
        return "unavailable", f"{m.group(1)} is not available for {platform_tag()}"
    if "ResolutionImpossible" in log or "conflicting dependencies" in log:
        return "unavailable", f"{' '.join(spec.requirements)} cannot be installed together for {platform_tag()}"
    lines = [l.strip() for l in log.splitlines() if l.strip().startswith("ERROR")] or log.strip().splitlines()[-1:] or ["no output"]
    return "error", lines[-1][:300]


def _installed(stdout: str) -> dict:
    """The probe's package list (a runtime may print its own lines on import: MNN does)."""
    line = next((l for l in reversed(stdout.splitlines()) if l.startswith("ZOO-ENV:")), "ZOO-ENV:{}")
    try:
        return json.loads(line[len("ZOO-ENV:"):])
    except ValueError:
        return {}


class _Abandon(Exception):
    """Leave the temporary environment unused: ``state`` is the answer instead."""

    def __init__(self, state: dict):
        super().__init__(state.get("message", ""))
        self.state = state


def _unavailable(cache: Path, spec: EnvSpec, line: str, **extra) -> _Abandon:
    """Remember that ``spec`` cannot be had (``extra``: what the answer depends on besides the release,
    e.g. the emulator's version), and leave its temporary environment."""
    atomic_write_text(cache / f"{spec.env_name}.unavailable.json",
                      json.dumps({"requirements": spec.requirements, "message": line, **extra}) + "\n")
    return _Abandon({"state": "unavailable", "message": line, **extra})


def _build(tmp: Path, cache: Path, spec: EnvSpec, timeout: float, t0: float) -> None:
    """venv + pip install + an import probe in ``tmp``; raises _Abandon (unavailable) or ZooError."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp)], check=True,
                   capture_output=True, text=True, timeout=120)
    cmd = [sys.executable, "-m", "pip", "--python", str(env_python(tmp)), "install", "--no-input",
           "--disable-pip-version-check", "--only-binary=:all:", "--no-warn-script-location",
           "--timeout", "30", "--retries", "1", *([] if spec.deps else ["--no-deps"]), *spec.requirements]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if cp.returncode != 0:
        kind, line = _pip_failure(cp.stdout + "\n" + cp.stderr, spec)
        if kind == "unavailable":
            raise _unavailable(cache, spec, line)
        raise ZooError(f"cannot create the {spec.label} environment: {line}")
    probe = ("import importlib, importlib.metadata as m, json, numpy; "
             f"importlib.import_module({spec.module!r}); "
             "print('ZOO-ENV:' + json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    cp = subprocess.run([str(env_python(tmp)), "-c", probe], capture_output=True, text=True, timeout=120,
                        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")})
    if cp.returncode != 0:
        tail = (cp.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise _unavailable(cache, spec, f"{spec.package}=={spec.version} installs but does not import on "
                                        f"{platform_tag()}: {tail}")
    info = {"runtime": spec.runtime, "package": spec.package, "version": spec.version,
            "requirements": spec.requirements, "deps": spec.deps, "python": platform_tag(), "installed": _installed(cp.stdout),
            "created_seconds": round(time.monotonic() - t0, 1)}
    atomic_write_text(tmp / READY, json.dumps(info, indent=1, sort_keys=True) + "\n")
    state = env_state(cache, spec)
    if state["state"] == "ready":  # another run made it meanwhile: keep that one (it may be in use)
        raise _Abandon(state)


def prepare_env(cache: Path, spec: EnvSpec, say=lambda msg: None, timeout: float = 900.0) -> dict:
    """The environment of ``spec``, created when missing (see env_state for the result). It is built in
    a temporary folder that replaces the final name only once complete (zoo.core.fsutil.atomic_dir).
    An environment that cannot be created (no network, pip failure) is a ZooError in one line."""
    state = env_state(cache, spec)
    if state["state"] != "missing":
        return state
    final = cache / spec.env_name
    say(f"creating the {spec.label} environment in {final}: pip install {'' if spec.deps else '--no-deps '}{' '.join(spec.requirements)}")
    t0 = time.monotonic()
    try:
        with atomic_dir(final) as tmp:
            _build(tmp, cache, spec, timeout, t0)
    except _Abandon as e:
        return e.state
    except subprocess.TimeoutExpired:
        raise ZooError(f"cannot create the {spec.label} environment: pip took over {timeout:.0f} s") from None
    except subprocess.CalledProcessError as e:
        raise ZooError(f"cannot create a virtual environment for {spec.label}: {(e.stderr or '').strip()[-200:]}") from None
    say(f"created {spec.label} in {time.monotonic() - t0:.0f} s")
    return env_state(cache, spec)


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _python_tag() -> str:
    return f"py{sys.version_info.major}{sys.version_info.minor}"


def prune_envs(cache: Path, keep: list[EnvSpec], say=lambda msg: None, keep_names: set[str] | None = None) -> dict:
    """Remove the environments (and remembered-unavailable markers) of ``cache`` that no spec of ``keep``
    names: those of matrix entries that changed or left the matrix. Only what is recognisably ours and
    for this Python is touched: a folder holding ``zoo-compat-env.json`` or a ``NAME.unavailable.json``,
    with this Python's tag in NAME; anything else (another Python's, a folder being built) stays.
    Returns {"removed": [{"name", "bytes"}], "kept": [names], "bytes": freed}."""
    cache = Path(cache)
    wanted = {s.env_name for s in keep} | set(keep_names or ())
    removed, kept = [], []
    if not cache.is_dir():
        return {"removed": removed, "kept": kept, "bytes": 0}
    tag = f"-{_python_tag()}-"
    for p in sorted(cache.iterdir()):
        name = p.name
        if name.endswith(".unavailable.json") and p.is_file():
            env = name[: -len(".unavailable.json")]
            if tag in env and env not in wanted:
                size = p.stat().st_size
                p.unlink()
                removed.append({"name": name, "bytes": size})
                say(f"removed {name}")
            continue
        if not p.is_dir() or p.is_symlink() or tag not in name:
            continue
        if not (p / READY).is_file():  # not ours, or being built right now (a hidden temporary name)
            continue
        if name in wanted:
            kept.append(name)
            continue
        size = dir_bytes(p)
        remove_dir(p)
        removed.append({"name": name, "bytes": size})
        say(f"removed {name} ({size / 2**20:.0f} MiB)")
    return {"removed": removed, "kept": kept, "bytes": sum(r["bytes"] for r in removed)}
