#!/usr/bin/env python3
"""Rewrite zoo/core/data/userland-linux-arm64.toml: the pinned Debian 12 arm64 packages (python3.11, its
standard library, libc, libstdc++ and what they depend on) that `zoo compat --prepare --platform
linux/arm64` downloads, verifies by sha256 and unpacks into the emulated userland.

It resolves the dependency closure with apt, in a private state and cache folder (its own sources list,
package lists, an empty dpkg status and `APT::Architecture=arm64`): the machine's own apt configuration,
dpkg architecture list and package state are neither read nor changed, and nothing is installed. The
package lists are verified by apt against the Debian archive keyring (`--keyring`, default Debian's own
file). Run it on a Debian or Ubuntu machine with apt; users and CI only download the pinned files.

    python3 scripts/update_userland.py [--mirror URL] [--security-mirror URL] [--keyring FILE] [--check]
"""
from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "zoo" / "core" / "data" / "userland-linux-arm64.toml"
#: what the aarch64 runtime wheels need: the interpreter with its whole standard library, and the C/C++
#: runtime libraries manylinux wheels expect from the system (libstdc++, libgcc_s, libgomp)
PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1", "libgomp1")
SUITES = (("debian", "bookworm"), ("debian", "bookworm-updates"), ("debian-security", "bookworm-security"))


def apt(tmp: Path, *args: str) -> str:
    opts = [f"Dir::Etc={tmp}/etc", f"Dir::Etc::SourceList={tmp}/etc/sources.list",
            f"Dir::Etc::SourceParts={tmp}/etc/sources.list.d", f"Dir::Etc::Preferences={tmp}/etc/preferences",
            f"Dir::Etc::PreferencesParts={tmp}/etc/preferences.d", f"Dir::State={tmp}/state",
            f"Dir::State::Lists={tmp}/state/lists", f"Dir::State::status={tmp}/status", f"Dir::Cache={tmp}/cache",
            "APT::Architecture=arm64", "APT::Architectures::=arm64", "Debug::NoLocking=1", "Acquire::Languages=none"]
    cmd = ["apt-cache" if args[0] in ("show", "policy") else "apt-get"]
    for o in opts:
        cmd += ["-o", o]
    cp = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=600)
    if cp.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:1] + list(args))} failed: {cp.stderr.strip()[-500:]}")
    return cp.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", default="http://deb.debian.org/debian")
    ap.add_argument("--security-mirror", default="http://deb.debian.org/debian-security")
    ap.add_argument("--keyring", default="/usr/share/keyrings/debian-archive-keyring.gpg")
    ap.add_argument("--check", action="store_true", help="only say whether the pinned list is current")
    a = ap.parse_args()
    if not Path(a.keyring).is_file():
        sys.exit(f"error: no keyring {a.keyring}: install debian-archive-keyring, or give --keyring")
    mirrors = {"debian": a.mirror.rstrip("/"), "debian-security": a.security_mirror.rstrip("/")}
    with tempfile.TemporaryDirectory(prefix="zoo-userland-apt-") as td:
        tmp = Path(td)
        for d in ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial"):
            (tmp / d).mkdir(parents=True)
        (tmp / "status").write_text("")
        (tmp / "etc" / "sources.list").write_text("".join(
            f"deb [arch=arm64 signed-by={a.keyring}] {mirrors[arch]} {suite} main\n" for arch, suite in SUITES))
        apt(tmp, "update", "-qq")
        uris = apt(tmp, "install", "--print-uris", "-qq", "-y", "--no-install-recommends", *PACKAGES)
        found = []
        for line in uris.splitlines():
            m = re.match(r"^'(\S+)' (\S+) (\d+) ", line)
            if m:  # URL, name_epoch:version_arch.deb, size
                name, version, _ = unquote(m.group(2))[:-len(".deb")].split("_")
                found.append((m.group(1), name, version, int(m.group(3))))
        records = {}  # (package, version, Filename) -> SHA256, from one `apt-cache show` of them all
        for rec in apt(tmp, "show", *(f"{n}={v}" for _, n, v, _ in found)).split("\n\n"):
            f = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", rec, re.M))
            if "SHA256" in f:
                records[(f["Package"], f["Version"], f["Filename"])] = f["SHA256"]
        debs = []
        for url, name, version, size in found:
            archive = next(k for k, v in sorted(mirrors.items(), key=lambda kv: -len(kv[1])) if url.startswith(v + "/"))
            path = unquote(url[len(mirrors[archive]) + 1:])
            sha = records.get((name, version, path))
            if not sha:
                sys.exit(f"error: apt-cache show gives no SHA256 for {name} {version} ({path})")
            debs.append({"package": name, "version": version, "archive": archive, "path": path, "sha256": sha,
                         "bytes": size})
    debs.sort(key=lambda d: d["package"])
    lines = ["# The Debian 12 (bookworm) arm64 userland of `zoo compat --platform linux/arm64`: python3.11 with its",
             "# standard library and the C/C++ runtime the aarch64 wheels need, as pinned .deb files. `--prepare`",
             "# downloads each from its archive (ZOO_DEBIAN_MIRROR / ZOO_DEBIAN_SECURITY_MIRROR override the",
             "# mirrors; snapshot.debian.org at `snapshot` is the fallback for a file the mirror no longer has),",
             "# checks its size and sha256, and unpacks it; nothing is installed on the machine.",
             "# Written by scripts/update_userland.py (apt in a private state folder); do not edit by hand.",
             "schema = 1", 'platform = "linux/arm64"', 'distribution = "Debian 12 (bookworm)"', 'python = "3.11"',
             f'snapshot = "{datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT000000Z")}"',
             f"packages = {list(PACKAGES)!r}".replace("'", '"'), "",
             "[mirrors]", *(f'{k} = "{v}"' for k, v in mirrors.items()), ""]
    for d in debs:
        lines += ["[[deb]]", *(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in d.items()), ""]
    text = "\n".join(lines)
    if a.check:
        old = OUT.read_text() if OUT.is_file() else ""
        same = [l for l in old.splitlines() if not l.startswith("snapshot")] == [l for l in text.splitlines() if not l.startswith("snapshot")]
        print("current" if same else "differs: run scripts/update_userland.py")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}: {len(debs)} packages, {sum(d['bytes'] for d in debs) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
