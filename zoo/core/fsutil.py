"""Atomic writes: a temporary name in the same folder, then a rename. The one writer of the project:
every file we produce lands through `atomic_write_bytes`/`atomic_write_text`, `atomic_path` (for a
tool that writes the file itself) or `copy_file_atomic`."""
from __future__ import annotations

import contextlib
import shutil

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from zoo.core.errors import ZooError


def _explain(e: OSError, path: Path) -> ZooError:
    if e.errno == errno.ENOSPC:
        return ZooError(f"no space left on the device while writing {path}; free some space and retry")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ZooError(f"cannot write {path}: {e.strerror}; choose a writable folder")
    return ZooError(f"cannot write {path}: {e.strerror or e}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _explain(e, path) from None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


ENV_CACHE = "ZOO_CACHE_DIR"


def user_cache(sub: str) -> Path:
    """A folder of the user cache: ``$ZOO_CACHE_DIR/SUB``, else ``${XDG_CACHE_HOME:-~/.cache}/ultraface-zoo/SUB``
    (checkpoints, the pinned photos, int8 sensitivity analyses). Not created here."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser() / sub
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ultraface-zoo" / sub


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_writable_dir(path: Path, what: str = "--out") -> Path:
    """Create the folder if needed and prove it is writable; a clear error otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ZooError(f"{what} {path} is a file, not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".zoo-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            raise ZooError(f"{what} {path}: a parent of it is a file, not a folder") from None
        raise _explain(e, path) from None
    return path


def copy_file_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a temporary name; nothing to do when ``dest`` already has its content."""
    src, dest = Path(src), Path(dest)
    if dest.is_file() and dest.stat().st_size == src.stat().st_size and sha256_file(dest) == sha256_file(src):
        return
    atomic_write_bytes(dest, src.read_bytes())


@contextlib.contextmanager
def atomic_path(path: Path, tag: str = "tmp", fixed: str | None = None):
    """A temporary name beside ``path`` for a tool (or a download) that writes the file itself.

    On a normal exit the temporary file is renamed to ``path`` (it must exist); on an
    exception it is removed, so nothing half-written is left under the final name.
    The name is fresh, or ``fixed`` (e.g. ".NAME.part": a run killed mid-write leaves only
    that one file, which the next run overwrites).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fixed is not None:
            name = str(path.with_name(fixed))
            if os.path.lexists(name):
                os.unlink(name)
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{tag}.tmp", dir=path.parent)
            os.close(fd)
            os.unlink(name)  # the tool creates it; we only want a unique name
    except OSError as e:
        raise _explain(e, path) from None
    tmp = Path(name)
    try:
        yield tmp
        if not tmp.is_file():
            raise ZooError(f"no file was written for {path}")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise _explain(e, path) from None
    finally:
        if tmp.exists():
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: Path):
    """A fresh temporary folder beside ``path`` for a tool that writes a folder (a SavedModel).

    On a normal exit it replaces ``path`` (an existing folder there is swapped out, then removed);
    on an exception it is removed, so nothing half-written is left under the final name.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise _explain(e, path) from None
    old = None
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise _explain(e, path) from None
    finally:
        for p in (tmp, old):
            if p is not None and p.exists():
                shutil.rmtree(p, ignore_errors=True)


def remove_dir(path: Path) -> None:
    """Remove a folder so that it disappears under its name at once: it is first moved to a temporary
    name beside it, then deleted (an interrupted removal leaves a hidden ``.NAME.*.gone``, never a
    half-deleted folder under the real name)."""
    path = Path(path)
    try:
        gone = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".gone", dir=path.parent))
        os.replace(path, gone / "x")
    except OSError as e:
        raise _explain(e, path) from None
    shutil.rmtree(gone, ignore_errors=True)
