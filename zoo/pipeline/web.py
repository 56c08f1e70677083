"""The web module shipped with the web artifacts: ``web/ultraface.js`` in every export or release folder that
holds a file it loads (a tfjs graph model, an ONNX file with a decoded or raw head: `Target.web_heads`).

The module is the package's own ``zoo/web/ultraface.js``, copied byte for byte (the same zoo writes the same
bytes), listed in the manifest's ``files`` with its sha256 like the golden kit, so `zoo verify` (a release) and
`zoo check` (an export) check it, `zoo publish` carries it and `zoo pull --target` fetches it with a web artifact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from zoo.exporters import get_target, target_names
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes

WEB = "web"
MODULE = f"{WEB}/ultraface.js"
#: the module's source in the installed package (zoo/web/ultraface.js, package data)
SOURCE = Path(__file__).resolve().parents[1] / "web" / "ultraface.js"


def loads_in_web_module(target: str, head: str) -> bool:
    """True when web/ultraface.js loads an artifact of ``target`` with ``head``."""
    return target in target_names() and head in get_target(target).web_heads


def wants_module(artifacts: Iterable) -> bool:
    """True when one of ``artifacts`` (manifest artifacts: ``target``, ``head``) is a file the module loads."""
    return any(loads_in_web_module(a.target, a.head) for a in artifacts)


def module_bytes() -> bytes:
    try:
        return SOURCE.read_bytes()
    except OSError as e:
        raise ZooError(f"the web module {SOURCE} cannot be read ({e.strerror or e}): reinstall ultraface-zoo") from None


def write_module(out: Path, artifacts: Iterable) -> list[str]:
    """Write ``out/web/ultraface.js`` when ``artifacts`` hold a file it loads (atomically; left as it is when it
    already holds these bytes); the paths written, relative to ``out`` (to list in the manifest's files)."""
    if not wants_module(artifacts):
        return []
    data = module_bytes()
    dest = Path(out) / MODULE
    try:  # a link is replaced by the file itself (a manifest lists no link)
        same = not dest.is_symlink() and dest.is_file() and dest.read_bytes() == data
    except OSError:
        same = False
    if not same:
        atomic_write_bytes(dest, data)
    return [MODULE]
