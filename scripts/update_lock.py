"""Rewrite the toolchain lock (zoo/core/data/constraints.txt) from what is installed in this environment:
every distribution ultraface-zoo[all,test,mutation,docs] needs, recursively, at its installed version, plus pip and
setuptools (the installer and the build backend). Run it only on purpose, after installing the new
versions (docs/install.md: "The toolchain lock"):

    .venv/bin/python scripts/update_lock.py [--check]

--check: write nothing; exit 1 if the lock would change (and say what).
"""
from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "zoo" / "core" / "data" / "constraints.txt"
HEADER = """\
# The toolchain lock: the exact versions the tests and the default release are proven with (torch, every
# converter and runtime of ultraface-zoo[all,test], the mutation and docs tools, and everything they pull
# in). scripts/install.sh and scripts/wheel_check.sh install through it (pip install -c). `zoo export` and
# `zoo release` warn when a package they use differs from it; tests/unit/test_toolchain.py keeps it equal
# to the installed versions and to zoo/core/data/compat_matrix.toml. Written by scripts/update_lock.py; it
# changes only on purpose (docs/install.md: "The toolchain lock").
"""


def canonical(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def closure(root: str, extras: set[str]) -> dict[str, tuple[str, str]]:
    """{canonical name: (name, installed version)} of ``root[extras]`` and everything it needs."""
    out: dict[str, tuple[str, str]] = {}
    todo, seen = [(root, frozenset(extras))], set()
    while todo:
        name, ex = todo.pop()
        if (canonical(name), ex) in seen:
            continue
        seen.add((canonical(name), ex))
        d = md.distribution(name)
        out[canonical(d.metadata["Name"])] = (d.metadata["Name"], d.version)
        for raw in d.requires or []:
            req = Requirement(raw)
            envs = [dict(default_environment(), extra=e) for e in (ex or {""})]
            if req.marker is None or any(req.marker.evaluate(e) for e in envs):
                todo.append((req.name, frozenset(req.extras)))
    return out


def render() -> str:
    pins = closure("ultraface-zoo", {"all", "test", "mutation", "docs"})
    pins.pop("ultraface-zoo")
    for tool in ("pip", "setuptools"):
        pins[tool] = (tool, md.version(tool))
    lines = [f"{name}=={version.split('+')[0]}" for _, (name, version) in sorted(pins.items())]
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    old = LOCK.read_text() if LOCK.is_file() else ""
    if "--check" in argv:
        if text != old:
            print(f"error: the lock {LOCK} differs from this environment: run scripts/update_lock.py on purpose",
                  file=sys.stderr)
            return 1
        return 0
    tmp = LOCK.with_name(LOCK.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(LOCK)
    print(f"wrote {LOCK} ({text.count(chr(10)) - HEADER.count(chr(10))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
