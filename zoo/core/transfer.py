"""A deadline for every network transfer: give up when the average throughput since the transfer began
stays under a floor once a grace period is over.

A per-read timeout does not end a transfer from a server that sends one byte every 20 seconds: every read
succeeds. :class:`Deadline` counts the bytes of one transfer (a download, a blob, an upload) and fails it,
with one line, when ``bytes / seconds`` is under the floor after the grace period (default 32 KiB/s after
30 s). ``ZOO_TRANSFER_FLOOR`` changes it: ``BYTES_PER_SECOND:GRACE_SECONDS`` (``32768:30``, the default),
or ``0`` for no floor. While a read waits, the socket's timeout is shortened to the moment the floor would
be crossed, so a stalled read ends on time too, not one per-read timeout later.

Standard library only (zoo.core.upstream runs under a bare ``python3``).
"""
from __future__ import annotations

import os
import socket
import time
from typing import Any

from zoo.core.errors import ZooError

ENV_FLOOR = "ZOO_TRANSFER_FLOOR"
DEFAULT_RATE = 32 * 1024  # bytes per second
DEFAULT_GRACE = 30.0  # seconds
_MIN_WAIT = 0.05  # seconds: the shortest socket timeout a read is given


class TransferStalled(ZooError):
    """A transfer whose average throughput stayed under the floor after the grace period."""


def floor() -> tuple[float, float]:
    """(bytes per second, grace seconds) from ``ZOO_TRANSFER_FLOOR``; (0, 0) when it is ``0`` (no floor)."""
    text = os.environ.get(ENV_FLOOR, "").strip()
    if not text:
        return float(DEFAULT_RATE), DEFAULT_GRACE
    if text == "0":
        return 0.0, 0.0
    rate, sep, grace = text.partition(":")
    try:
        r, g = float(rate), float(grace) if sep else DEFAULT_GRACE
    except ValueError:
        r = g = -1.0
    if not (r >= 0 and g >= 0) or r != r or g != g or r == float("inf") or g == float("inf"):
        raise ZooError(f"{ENV_FLOOR}={text!r} is not BYTES_PER_SECOND:GRACE_SECONDS (e.g. 32768:30), or 0 for no floor")
    return r, g


_STALLED: dict[type, type] = {}


def _stalled(error: type[ZooError]) -> type[ZooError]:
    """``error`` made a TransferStalled too (one class per family)."""
    if issubclass(error, TransferStalled):
        return error
    if error not in _STALLED:
        _STALLED[error] = type(f"Stalled{error.__name__}", (TransferStalled, error), {})
    return _STALLED[error]


def _rate(n: float) -> str:
    return f"{n / 1024:.1f} KiB/s" if n >= 1024 else f"{n:.0f} B/s"


class Deadline:
    """The clock of one transfer. ``what`` names it in the error ("GET http://.../blobs/sha256:..."); ``error``
    is the ZooError subclass raised (the caller's family: a registry's, a download's), made a
    :class:`TransferStalled` too."""

    def __init__(self, what: str, error: type[ZooError] = ZooError, hint: str = ""):
        self.what = what
        self.rate, self.grace = floor()
        self.start = time.monotonic()
        self.bytes = 0
        self.hint = hint
        self.error = _stalled(error)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        if self.rate <= 0:
            return False
        t = self.elapsed()
        return t > self.grace and self.bytes < self.rate * t

    def add(self, n: int) -> None:
        """``n`` more bytes moved; fails when the floor is crossed."""
        self.bytes += n
        self.check()

    def check(self) -> None:
        if self.expired():
            t = self.elapsed()
            raise self.error(
                f"{self.what}: gave up after {t:.0f} s: {self.bytes} bytes, {_rate(self.bytes / t)} on average, under "
                f"the floor of {_rate(self.rate)} after {self.grace:g} s ({ENV_FLOOR}=BYTES_PER_SECOND:GRACE_SECONDS "
                f"changes it){'; ' + self.hint if self.hint else ''}")

    def wait(self, per_read: float) -> float:
        """The socket timeout for the next read: ``per_read``, shortened to when the floor would be crossed."""
        if self.rate <= 0:
            return per_read
        cross = max(self.grace, self.bytes / self.rate) - self.elapsed()  # the floor is crossed then, unless bytes come
        return max(_MIN_WAIT, min(per_read, cross + _MIN_WAIT))

    def arm(self, resp: Any, per_read: float) -> None:
        """Set the timeout of ``resp``'s socket (an http.client response) for its next read (best effort)."""
        sock = _socket_of(resp)
        if sock is not None:
            try:
                sock.settimeout(self.wait(per_read))
            except OSError:
                pass


def _socket_of(resp: Any) -> socket.socket | None:
    fp = getattr(resp, "fp", None)
    raw = getattr(fp, "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def read(resp: Any, limit: int, deadline: Deadline, per_read: float) -> bytes:
    """At most ``limit`` bytes of ``resp`` (to its end), under ``deadline``. A read that times out because the
    floor was crossed is the deadline's error; any other OSError is the caller's to word."""
    parts: list[bytes] = []
    n = 0
    while n < limit:
        chunk = read1(resp, min(1 << 20, limit - n), deadline, per_read)
        if not chunk:
            break
        parts.append(chunk)
        n += len(chunk)
    return b"".join(parts)


def read1(resp: Any, size: int, deadline: Deadline, per_read: float) -> bytes:
    """One read of up to ``size`` bytes (what is there, not waiting for all of them), under ``deadline``."""
    deadline.check()
    deadline.arm(resp, per_read)
    try:
        chunk: bytes = resp.read1(size) if hasattr(resp, "read1") else resp.read(size)
    except (TimeoutError, socket.timeout):
        deadline.check()
        raise
    deadline.add(len(chunk))
    return chunk
