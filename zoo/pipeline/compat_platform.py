"""`zoo compat --platform linux/arm64`: each artifact in the aarch64 build of its runtime release, run
under user-mode emulation on each CPU model, with nothing installed on the machine.

What it is made of, all cached in $ZOO_COMPAT_DIR and built only by `zoo compat --prepare`:
- the userland: Debian 12's arm64 python3.11 with its standard library and C/C++ runtime, from the .deb
  files pinned with their sha256 in ``zoo/core/data/userland-linux-arm64.toml`` (scripts/update_userland.py
  writes it), downloaded, verified and unpacked in Python (no dpkg, no apt, no change to the machine);
- one environment per runtime release: the release's aarch64 wheels (with NumPy) installed by pip into
  ``site/`` (``pip install --target --platform manylinux_2_X_aarch64``), proven to import under emulation
  before it is renamed into place.

A run starts each worker explicitly through the emulator, ``qemu-aarch64-static -cpu MODEL -L VIEW
VIEW/usr/bin/python3.11 -m zoo.pipeline.compat_worker`` (zoo.core.isolation's ``launcher``), never
through binfmt_misc. VIEW is the userland seen through one CPU model: links to the userland's folders and
a ``/proc/cpuinfo`` describing that CPU. qemu 7.2 (Debian 12's) passes the host's x86 /proc/cpuinfo
through, and pytorch/cpuinfo (inside onnxruntime and XNNPACK/LiteRT) then finds no ARM core and
dereferences NULL: onnxruntime crashed at import, LiteRT's int8 kernels at their first run (measured).
qemu resolves a guest's absolute paths inside ``-L`` first, so the view's cpuinfo is the one read; its
``Features`` are the hwcaps and its ``CPU part`` the MIDR that qemu itself reports for the model (probed
under it), so the runtimes pick exactly the kernels the CPU has (a cpuinfo claiming a dot product the
model lacks made XNNPACK execute an illegal instruction). Newer qemu emulates /proc/cpuinfo itself.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_dir, atomic_write_text
from zoo.core.isolation import WarmWorkers
from zoo.core.platforms import PLATFORMS, CpuModel, Platform, get_platform, hwcap_names
from zoo.pipeline.compat_env import (READY, EnvSpec, _Abandon, _installed, _pip_failure, _unavailable, env_state,
                                     prepare_env)

MIRROR_ENV = {"debian": "ZOO_DEBIAN_MIRROR", "debian-security": "ZOO_DEBIAN_SECURITY_MIRROR"}
SNAPSHOT_ENV = "ZOO_DEBIAN_SNAPSHOT"  # the snapshot archive's base (default https://snapshot.debian.org/archive)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,80}$")
_DEB_PATH = re.compile(r"^pool/[A-Za-z0-9._+~/-]{1,200}\.deb$")
#: what a worker under emulation gets besides its import path: no user site (the host's ~/.local holds
#: x86 packages), no .pyc written into the cache or the source tree
EMULATED_ENV = {"PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


# ---------------------------------------------------------------------------------------------- the emulator
@dataclass(frozen=True)
class Qemu:
    path: str
    version: str  # "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"

    @property
    def release(self) -> tuple[int, ...]:
        m = re.match(r"(\d+)\.(\d+)", self.version)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def qemu_env_var(plat: Platform) -> str:
    return f"ZOO_QEMU_{plat.machine.upper()}"


def find_qemu(plat: Platform) -> Qemu | None:
    """The user-mode emulator: ``$ZOO_QEMU_AARCH64`` (a path), else qemu-aarch64-static or qemu-aarch64
    on PATH; None when there is none (or it does not run)."""
    given = os.environ.get(qemu_env_var(plat))
    candidates = [given] if given else [shutil.which(n) for n in plat.qemu]
    for path in filter(None, candidates):
        try:
            cp = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        m = re.search(r"version (\S+(?: \([^)]*\))?)", cp.stdout)
        if cp.returncode == 0 and m:
            return Qemu(str(Path(path).resolve()), m.group(1))
    return None


def no_qemu_message(plat: Platform) -> str:
    given = os.environ.get(qemu_env_var(plat))
    if given:
        return f"{qemu_env_var(plat)}={given} does not run as a qemu user-mode emulator ({plat.qemu[0]} --version failed)"
    return (f"{plat.qemu[0]} is not installed: install it (Debian/Ubuntu: apt-get install qemu-user-static) or set "
            f"{qemu_env_var(plat)} to a qemu-{plat.machine} binary; it is started explicitly, no binfmt_misc needed")


# ---------------------------------------------------------------------------------------------- the userland
@dataclass(frozen=True)
class Deb:
    package: str
    version: str
    archive: str
    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Userland:
    platform: str
    distribution: str
    python: str
    snapshot: str
    mirrors: dict
    debs: tuple[Deb, ...]
    digest: str

    @property
    def name(self) -> str:
        """Its cache folder: the platform, the distribution, this Python's tag (so `--prune` knows it as
        ours) and the pin file's hash."""
        distro = re.sub(r"[^a-z0-9]+", "", self.distribution.lower().split("(")[0])
        tag = get_platform(self.platform).tag
        return f"userland-{tag}-{distro}-py{sys.version_info.major}{sys.version_info.minor}-{self.digest[:8]}"

    def url(self, deb: Deb) -> str:
        base = os.environ.get(MIRROR_ENV.get(deb.archive, "")) or self.mirrors[deb.archive]
        return f"{base.rstrip('/')}/{urllib.parse.quote(deb.path)}"

    def snapshot_url(self, deb: Deb) -> str:
        base = os.environ.get(SNAPSHOT_ENV) or "https://snapshot.debian.org/archive"
        return f"{base.rstrip('/')}/{deb.archive}/{self.snapshot}/{urllib.parse.quote(deb.path)}"


def userland_file(plat: Platform) -> str:
    return f"userland-{plat.name.replace('/', '-')}.toml"


def parse_userland(text: str, source: str) -> Userland:
    """The checked pin file; anything unexpected is one ZooError line naming the entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ZooError(f"{source} is not valid TOML: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise ZooError(f"{source}: expected `schema = 1`")
    for k in ("platform", "distribution", "python", "snapshot"):
        if not isinstance(data.get(k), str) or not data[k]:
            raise ZooError(f"{source}: {k!r} must be non-empty text")
    mirrors = data.get("mirrors")
    if not isinstance(mirrors, dict) or not mirrors or not all(
            isinstance(v, str) and re.match(r"^https?://[^\s/]+(/\S*)?$", v) for v in mirrors.values()):
        raise ZooError(f"{source}: [mirrors] must map archive names to http(s) URLs")
    debs = []
    for i, d in enumerate(data.get("deb") or []):
        w = f"{source}: deb #{i + 1}"
        if not isinstance(d, dict):
            raise ZooError(f"{w} is not a table")
        if not (isinstance(d.get("package"), str) and _DEB_NAME.match(d["package"])):
            raise ZooError(f"{w}: 'package' is not a Debian package name")
        p = d.get("path")
        if not (isinstance(p, str) and _DEB_PATH.match(p)) or ".." in p.split("/"):
            raise ZooError(f"{w} ({d['package']}): 'path' must be pool/....deb inside the archive")
        if d.get("archive") not in mirrors:
            raise ZooError(f"{w} ({d['package']}): archive {str(d.get('archive'))[:40]!r} has no mirror")
        if not (isinstance(d.get("sha256"), str) and _HEX64.match(d["sha256"])):
            raise ZooError(f"{w} ({d['package']}): 'sha256' must be 64 hex digits")
        b = d.get("bytes")
        if not isinstance(b, int) or isinstance(b, bool) or not 0 < b < 1 << 30:
            raise ZooError(f"{w} ({d['package']}): 'bytes' must be a size")
        if not isinstance(d.get("version"), str) or not d["version"]:
            raise ZooError(f"{w} ({d['package']}): 'version' must be text")
        debs.append(Deb(d["package"], d["version"], d["archive"], p, d["sha256"], b))
    if not debs:
        raise ZooError(f"{source}: no [[deb]] entries")
    return Userland(data["platform"], data["distribution"], data["python"], data["snapshot"], dict(mirrors),
                    tuple(debs), hashlib.sha256(text.encode()).hexdigest())


def load_userland(plat: Platform) -> Userland:
    name = userland_file(plat)
    try:
        text = resources.files("zoo.core").joinpath(f"data/{name}").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read zoo/core/data/{name}: {e}") from None
    return parse_userland(text, f"zoo/core/data/{name}")


def userland_state(cache: Path, ul: Userland) -> dict:
    d = cache / ul.name
    try:
        info = json.loads((d / READY).read_text())
    except (OSError, ValueError):
        return {"state": "missing"}
    python = d / "root" / "usr" / "bin" / f"python{ul.python}"
    if not isinstance(info, dict) or info.get("digest") != ul.digest or not python.is_file():
        return {"state": "missing"}
    return {"state": "ready", "root": str(d / "root"), "python": str(python), "name": ul.name, "info": info}


def _fetch(url: str, timeout: float = 60.0) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "ultraface-zoo"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - http(s) URLs of the pin file only
        return r.read(1 << 30)


def _download(ul: Userland, deb: Deb) -> bytes:
    """The .deb's bytes, checked against the pinned size and sha256; from the mirror, or (a file the
    mirror no longer has) from snapshot.debian.org."""
    url = ul.url(deb)
    try:
        data = _fetch(url)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise ZooError(f"cannot fetch the {ul.platform} userland: {url}: HTTP {e.code}") from None
        try:
            data = _fetch(ul.snapshot_url(deb))
        except (urllib.error.URLError, OSError) as e2:
            raise ZooError(f"cannot fetch the {ul.platform} userland: {deb.package} {deb.version} is gone from "
                           f"{url.split('/pool/')[0]} and snapshot.debian.org failed ({getattr(e2, 'reason', e2)}): "
                           f"refresh the pin (scripts/update_userland.py) or set {MIRROR_ENV.get(deb.archive, 'the mirror')}"
                           f" to a mirror that has it") from None
    except (urllib.error.URLError, OSError) as e:
        raise ZooError(f"cannot fetch the {ul.platform} userland: {urllib.parse.urlsplit(url).netloc} cannot be "
                       f"reached ({getattr(e, 'reason', e)}); offline? ({MIRROR_ENV.get(deb.archive, '')} sets a mirror)") from None
    if len(data) != deb.bytes or hashlib.sha256(data).hexdigest() != deb.sha256:
        raise ZooError(f"{deb.package} {deb.version} from {url} is not the pinned file (size {len(data)}, expected "
                       f"{deb.bytes}; or another sha256): a changed or damaged download, nothing was unpacked")
    return data


def deb_data(data: bytes, name: str = "deb") -> tarfile.TarFile:
    """The ``data.tar.*`` member of a .deb (an ar archive) as an open tar file."""
    if not data.startswith(b"!<arch>\n"):
        raise ZooError(f"{name} is not a .deb (no ar header)")
    pos = 8
    while pos + 60 <= len(data):
        head = data[pos:pos + 60]
        member = head[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(head[48:58].decode("ascii").strip())
        except ValueError:
            raise ZooError(f"{name}: a damaged ar member header") from None
        body = data[pos + 60:pos + 60 + size]
        if len(body) != size:
            raise ZooError(f"{name} is truncated")
        if member.startswith("data.tar"):
            if member.endswith(".zst"):
                raise ZooError(f"{name}: zstd-compressed packages are not supported (Debian 12's are xz)")
            try:
                return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
            except tarfile.TarError as e:
                raise ZooError(f"{name}: its data archive is damaged ({e})") from None
        pos += 60 + size + (size & 1)
    raise ZooError(f"{name} holds no data.tar member")


def safe_members(tar: tarfile.TarFile, name: str = "deb") -> list[tarfile.TarInfo]:
    """The members to unpack, each kept inside the root: names normalized and relative, absolute symlinks
    rewritten relative to the root (so they resolve inside it, not on the host), no device files; a
    member or link leaving the root is refused."""
    out = []
    for m in tar.getmembers():
        rel = posixpath.normpath(m.name.lstrip("/"))
        if rel == ".":
            continue
        if rel == ".." or rel.startswith("../"):
            raise ZooError(f"{name}: member {m.name!r} leaves the root")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            continue  # devices, fifos: nothing a userland for one program needs
        m.name = rel
        if m.issym():
            if m.linkname.startswith("/"):
                m.linkname = posixpath.relpath(m.linkname, posixpath.dirname("/" + rel))
            lands = posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.linkname))
            if lands == ".." or lands.startswith("../"):
                raise ZooError(f"{name}: link {rel} -> {m.linkname} leaves the root")
        elif m.islnk():
            target = posixpath.normpath(m.linkname.lstrip("/"))
            if target == ".." or target.startswith("../"):
                raise ZooError(f"{name}: hard link {rel} -> {m.linkname} leaves the root")
            m.linkname = target
        m.mode = (m.mode & 0o755) | (0o700 if m.isdir() else 0o600)  # no setuid/setgid, nothing world-writable
        out.append(m)
    return out


def _unpack(tar: tarfile.TarFile, members: list[tarfile.TarInfo], root: Path) -> None:
    for m in members:
        dest = root / m.name
        if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
            dest.unlink()  # a later package replaces a file (as dpkg would); a folder stays
    kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    tar.extractall(root, members=members, **kw)  # noqa: S202 - members checked by safe_members


def prepare_userland(cache: Path, ul: Userland, say=lambda msg: None) -> dict:
    """The userland, created when missing: every pinned .deb downloaded and verified, then unpacked in a
    temporary folder renamed into place once the interpreter is there."""
    st = userland_state(cache, ul)
    if st["state"] == "ready":
        return st
    final = cache / ul.name
    total = sum(d.bytes for d in ul.debs)
    say(f"creating the {ul.platform} userland in {final}: {ul.distribution} python{ul.python} and its libraries, "
        f"{len(ul.debs)} pinned .deb files ({total / 1e6:.1f} MB, sha256-verified)")
    t0 = time.monotonic()
    with atomic_dir(final) as tmp:
        root = tmp / "root"
        root.mkdir()
        for deb in sorted(ul.debs, key=lambda d: d.package):
            data = _download(ul, deb)
            with deb_data(data, f"{deb.package}_{deb.version}.deb") as tar:
                _unpack(tar, safe_members(tar, deb.package), root)
        # an empty loader cache: the dynamic loader then searches the userland's own library folders
        # instead of reading the host's x86 /etc/ld.so.cache
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc" / "ld.so.cache").write_bytes(b"")
        if not (root / "usr" / "bin" / f"python{ul.python}").is_file():
            raise ZooError(f"the {ul.platform} userland has no usr/bin/python{ul.python}: the pin file is wrong")
        info = {"platform": ul.platform, "distribution": ul.distribution, "python": ul.python, "digest": ul.digest,
                "packages": {d.package: d.version for d in ul.debs}, "created_seconds": round(time.monotonic() - t0, 1)}
        atomic_write_text(tmp / READY, json.dumps(info, indent=1, sort_keys=True) + "\n")
    say(f"created the {ul.platform} userland in {time.monotonic() - t0:.0f} s")
    return userland_state(cache, ul)


# ---------------------------------------------------------------------------------------------- CPU views
_PROBE = r"""
import ctypes, json, mmap, sys
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
libc.getauxval.argtypes = [ctypes.c_ulong]
code = bytes.fromhex("000038d5c0035fd6")  # mrs x0, midr_el1; ret
buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
print("ZOO-CPU:" + json.dumps({"hwcap": libc.getauxval(16), "hwcap2": libc.getauxval(26), "midr": fn(),
                              "python": sys.version.split()[0]}))
"""


def host_cpu_count() -> int:
    """How many processors the guest sees (/sys/devices/system/cpu/possible passes through qemu)."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
        return max(int(part.split("-")[-1]) for part in text.split(",")) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


def cpuinfo_text(midr: int, features: list[str], count: int) -> str:
    """A /proc/cpuinfo as the arm64 Linux kernel writes it, for ``count`` processors of one MIDR."""
    block = ["BogoMIPS\t: 50.00", f"Features\t: {' '.join(features)}", f"CPU implementer\t: 0x{midr >> 24 & 0xff:02x}",
             "CPU architecture: 8", f"CPU variant\t: 0x{midr >> 20 & 0xf:x}", f"CPU part\t: 0x{midr >> 4 & 0xfff:03x}",
             f"CPU revision\t: {midr & 0xf}"]
    return "".join(f"processor\t: {i}\n" + "\n".join(block) + "\n\n" for i in range(count))


def make_view(work: Path, root: Path, python: str, qemu: Qemu, cpu: CpuModel) -> tuple[Path, dict]:
    """The userland seen through ``cpu``: a folder of links to the userland's folders plus a
    /proc/cpuinfo of that CPU as qemu emulates it (its hwcaps and MIDR, probed under it)."""
    view = work / f"view-{cpu.name}"
    if (view / "zoo-view.json").is_file():
        return view, json.loads((view / "zoo-view.json").read_text())
    if view.exists():
        shutil.rmtree(view)
    view.mkdir(parents=True)
    for entry in sorted(Path(root).iterdir()):
        (view / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    cmd = [qemu.path, "-cpu", cpu.qemu, "-L", str(view), python, "-I", "-c", _PROBE]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ZooError(f"the {cpu.name} probe under {Path(qemu.path).name} -cpu {cpu.qemu} timed out") from None
    line = next((l for l in cp.stdout.splitlines() if l.startswith("ZOO-CPU:")), None)
    if cp.returncode != 0 or line is None:
        tail = (cp.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise ZooError(f"the userland's python does not run under {Path(qemu.path).name} {qemu.version} -cpu {cpu.qemu}: {tail}")
    got = json.loads(line[len("ZOO-CPU:"):])
    features = hwcap_names(int(got["hwcap"]), int(got["hwcap2"]))
    (view / "proc").mkdir()
    (view / "proc" / "cpuinfo").write_text(cpuinfo_text(int(got["midr"]), features, host_cpu_count()))
    info = {"qemu": qemu.version, "qemu_binary": Path(qemu.path).name, "qemu_cpu": cpu.qemu, "midr": f"0x{int(got['midr']):08x}",
            "features": " ".join(features), "python": got["python"]}
    (view / "zoo-view.json").write_text(json.dumps(info))
    return view, info


# ---------------------------------------------------------------------------------------------- environments
def _import_probe(module: str) -> str:
    return ("import importlib, importlib.metadata as m, json, numpy; "
            f"importlib.import_module({module!r}); "
            "print('ZOO-ENV:' + json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")


def _build(tmp: Path, cache: Path, spec: EnvSpec, plat: Platform, qemu: Qemu, ul: dict, timeout: float, t0: float) -> None:
    """pip install --target of the platform's wheels into ``tmp/site``, then the import probe under
    emulation (the first CPU model: the baseline every CPU of the platform has)."""
    site = tmp / "site"
    py = ul["info"]["python"]
    cmd = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--only-binary=:all:",
           "--no-warn-script-location", "--timeout", "30", "--retries", "1", "--target", str(site),
           *[a for tag in plat.wheel_platforms for a in ("--platform", tag)], "--python-version", py,
           "--implementation", "cp", "--abi", f"cp{py.replace('.', '')}",
           *([] if spec.deps else ["--no-deps"]), *spec.requirements]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if cp.returncode != 0:
        kind, line = _pip_failure(cp.stdout + "\n" + cp.stderr, spec)
        if kind == "unavailable":
            m = re.search(r"No matching distribution found for (\S+)", cp.stdout + cp.stderr)
            what = m.group(1) if m else " ".join(spec.requirements)
            raise _unavailable(cache, spec, f"{what} has no wheel for {plat.name} (Python {py})")
        raise ZooError(f"cannot create the {spec.label} {plat.name} environment: {line}")
    with tempfile.TemporaryDirectory(prefix="zoo-view-") as vd:
        view, emu = make_view(Path(vd), Path(ul["root"]), ul["python"], qemu, plat.cpus[0])
        env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}, **EMULATED_ENV,
               "PYTHONPATH": str(site)}
        cp = subprocess.run([qemu.path, "-cpu", plat.cpus[0].qemu, "-L", str(view), ul["python"], "-s", "-c",
                             _import_probe(spec.module)], capture_output=True, text=True, timeout=600, env=env,
                            stdin=subprocess.DEVNULL)
    if cp.returncode != 0:
        lines = [l.strip() for l in (cp.stderr + "\n" + cp.stdout).splitlines() if l.strip()]
        tail = next((l for l in reversed(lines) if l.startswith("qemu:")), lines[-1] if lines else "no output")[:200]
        raise _unavailable(cache, spec, f"{spec.package}=={spec.version} installs but does not import on {plat.name} "
                                        f"under qemu {qemu.version} -cpu {plat.cpus[0].qemu}: {tail}", qemu=qemu.version)
    info = {"runtime": spec.runtime, "package": spec.package, "version": spec.version, "requirements": spec.requirements,
            "deps": spec.deps, "platform": spec.platform, "python": f"Python {py}/{plat.name}", "userland": ul["name"],
            "installed": _installed(cp.stdout), "probed_with": emu, "created_seconds": round(time.monotonic() - t0, 1)}
    atomic_write_text(tmp / READY, json.dumps(info, indent=1, sort_keys=True) + "\n")
    if env_state(cache, spec)["state"] == "ready":
        raise _Abandon(env_state(cache, spec))


def platform_state(cache: Path, spec: EnvSpec, qemu: Qemu | None) -> dict:
    """The state of a platform environment without building anything: ready (with the userland's python
    and the environment's ``site``), unavailable (no emulator, no wheel, does not import under this
    emulator), or missing (`--prepare` builds it)."""
    plat = get_platform(spec.platform)
    if qemu is None:
        return {"state": "unavailable", "message": no_qemu_message(plat)}
    ul = userland_state(cache, load_userland(plat))
    st = env_state(cache, spec)
    if st["state"] == "unavailable" and st.get("qemu") not in (None, qemu.version):
        st = {"state": "missing"}  # found under another emulator release: try again with this one
    if st["state"] == "ready":
        if ul["state"] != "ready" or st["info"].get("userland") != ul.get("name"):
            return {"state": "missing"}
        return {**st, "python": ul["python"], "root": ul["root"], "site": str(Path(st["env"]) / "site"),
                "userland": ul["info"], "qemu": qemu}
    return st


def prepare(cache: Path, spec: EnvSpec, say=lambda msg: None, timeout: float = 900.0) -> dict:
    """Create the environment of ``spec`` when missing: this machine's (zoo.pipeline.compat_env), or another
    platform's (its userland first). Only `zoo compat --prepare` calls this for another platform."""
    if not spec.platform:
        return prepare_env(cache, spec, say, timeout)
    plat = get_platform(spec.platform)
    qemu = find_qemu(plat)
    st = platform_state(cache, spec, qemu)
    if st["state"] != "missing":
        return st
    ul = prepare_userland(cache, load_userland(plat), say)
    final = cache / spec.env_name
    say(f"creating the {spec.label} {plat.name} environment in {final}: pip install --target (aarch64 wheels) "
        f"{'' if spec.deps else '--no-deps '}{' '.join(spec.requirements)}")
    t0 = time.monotonic()
    try:
        with atomic_dir(final) as tmp:
            _build(tmp, cache, spec, plat, qemu, ul, timeout, t0)
    except _Abandon as e:
        return e.state if e.state["state"] != "ready" else platform_state(cache, spec, qemu)
    except subprocess.TimeoutExpired:
        raise ZooError(f"cannot create the {spec.label} {plat.name} environment: it took over {timeout:.0f} s") from None
    say(f"created {spec.label} ({plat.name}) in {time.monotonic() - t0:.0f} s")
    return platform_state(cache, spec, qemu)


def keep_names(specs: list[EnvSpec]) -> set[str]:
    """What `--prune` keeps besides ``specs``' own environments: every platform's variant of them and the
    current userlands."""
    out = {s.on(p).env_name for s in specs for p in PLATFORMS}
    for p in PLATFORMS.values():
        try:
            out.add(load_userland(p).name)
        except ZooError:
            pass
    return out


@dataclass
class Lane:
    """One CPU model of a platform: its view of the userland and what the emulation reports."""

    platform: str
    cpu: CpuModel
    view: Path
    emulation: dict  # qemu version and binary, qemu CPU, MIDR, features

    def launcher(self, qemu: Qemu) -> list[str]:
        return [qemu.path, "-cpu", self.cpu.qemu, "-L", str(self.view)]


class Lanes:
    """The CPU views of one run (made once per CPU model, in the run's temporary folder) and one warm
    worker per (environment, CPU model): under emulation a worker's start (Python, NumPy, the runtime
    and our modules, ~20 s) costs more than running a file, so each lane's cells share a process; a
    cell that fails or crashes takes the process with it and the next starts a fresh one
    (zoo.core.isolation.WarmWorkers)."""

    def __init__(self, work: Path, src: Path):
        self.work, self.src = work, src
        self.views: dict[tuple[str, str], Lane] = {}
        self.workers: dict[tuple[str, str], WarmWorkers] = {}
        self.lock = threading.Lock()  # lanes run in threads (zoo compat --jobs)

    def get(self, st: dict, platform: str, cpu_name: str) -> Lane:
        plat = get_platform(platform)
        cpu = plat.cpu(cpu_name)
        key = (platform, cpu.name)
        with self.lock:
            if key not in self.views:
                view, info = make_view(self.work / plat.tag, Path(st["root"]), st["python"], st["qemu"], cpu)
                self.views[key] = Lane(platform, cpu, view, info)
            return self.views[key]

    def warm(self, st: dict, lane: Lane) -> WarmWorkers:
        key = (st["env"], lane.cpu.name)
        with self.lock:
            if key not in self.workers:
                self.workers[key] = WarmWorkers("zoo.pipeline.compat_worker", env_extra=dict(EMULATED_ENV),
                                                launcher=lane.launcher(st["qemu"]), python=st["python"],
                                                pythonpath=[st["site"], str(self.src)])
            return self.workers[key]

    def close(self) -> None:
        with self.lock:
            workers, self.workers = list(self.workers.values()), {}
        for w in workers:
            w.close()
