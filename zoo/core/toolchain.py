"""The toolchain lock: the exact versions of torch and of every converter and runtime (and everything
they pull in) that the tests and the default release are proven with, ``zoo/core/data/constraints.txt``.

``scripts/install.sh`` installs through it (``pip install -c``); ``zoo export`` and ``zoo release`` warn
in one line when a package they use differs from it (:func:`drift`); a test keeps the installed
versions, the lock and ``compat_matrix.toml`` in agreement. The lock changes only on purpose (docs/install.md:
"The toolchain lock").
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from zoo.core.errors import ZooError

LOCK_PATH = Path(__file__).parent / "data" / "constraints.txt"
#: another lock to compare with (e.g. a team's own, stricter one); default: the packaged one
LOCK_ENV = "ZOO_TOOLCHAIN_LOCK"

_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*(?:#.*)?$")


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``ai_edge.litert`` == ``ai-edge-litert``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str, where: str = "the lock") -> dict[str, str]:
    """``name==version`` lines (comments and blank lines aside) -> {canonical name: version}."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ZooError(f"{where}, line {n}: expected 'name==version', got {line[:80]!r}")
        name = canonical(m.group(1))
        if name in out:
            raise ZooError(f"{where}, line {n}: {m.group(1)} is pinned twice")
        out[name] = m.group(2)
    return out


def lock_path() -> Path:
    return Path(os.environ[LOCK_ENV]) if os.environ.get(LOCK_ENV) else LOCK_PATH


def read_lock(path: Path | None = None) -> dict[str, str]:
    path = lock_path() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read the toolchain lock {path}: {e}") from None
    return parse_lock(text, str(path))


def _public(version: str) -> str:
    """The public part of a version: ``2.13.0+cpu`` is torch 2.13.0 for the lock (PEP 440 local label)."""
    return version.split("+", 1)[0]


def drift(versions: dict[str, str], lock: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(package, version in use, locked version) for each package in ``versions`` that the lock pins
    at another version; packages the lock does not name are not drift."""
    lock = read_lock() if lock is None else lock
    out = []
    for name, version in sorted(versions.items(), key=lambda kv: canonical(kv[0])):
        pinned = lock.get(canonical(name))
        if pinned is not None and _public(version) != _public(pinned):
            out.append((name, version, pinned))
    return out


def drift_line(versions: dict[str, str], lock: dict[str, str] | None = None) -> str | None:
    """One warning line naming every package in use that differs from the lock, or None."""
    d = drift(versions, lock)
    if not d:
        return None
    what = ", ".join(f"{name} {used} (lock {pinned})" for name, used, pinned in d)
    return (f"warning: the toolchain differs from the lock ({lock_path()}): {what}; this build may not "
            f"match a release built with the lock (scripts/install.sh installs it)")
