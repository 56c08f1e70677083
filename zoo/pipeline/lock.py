"""One writer per release folder, and the clean-up of what an interrupted run left."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from pathlib import Path

from zoo.core.errors import ZooError

LOCK_NAME = ".zoo-release.lock"


@contextlib.contextmanager
def release_lock(out: Path):
    """One release per folder at a time: a second one is refused, not interleaved."""
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as e:
        raise ZooError(f"cannot create the lock file {path}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise ZooError(f"another `zoo release` is writing {out} (pid {holder}); wait for it to finish or use another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def clean_stale_work(out: Path) -> None:
    """Private work folders of an interrupted (even SIGKILLed) run; safe under the lock."""
    for p in out.glob(".zoo-work-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
