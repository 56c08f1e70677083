"""Atomic writes: a temporary name in the same folder, then a rename."""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from zoo.errors import ZooError


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
