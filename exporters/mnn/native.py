"""MNN's native side: the compiled extensions, their captured log, and the checks shared by the
conversion, quantization and runner modules.

Only the compiled extensions of the ``MNN`` wheel are used:

* ``_tools`` (``_tools.mnnconvert(argv)``, ``_tools.mnnquant(argv)``) for
  conversion and quantization;
* ``MNN`` (``_mnncengine``) for loading and running models.

Never import ``MNN.tools`` (or anything under it): importing
``MNN.tools.mnnconvert`` / ``MNN.tools.mnnquant`` pulls in
``MNN.tools.utils.log``, which shells out to ``pip install -U
aliyun-log-python-sdk`` and posts usage logs (machine id, model hash) to a
remote server.  The native functions do neither (see
tests/targets/test_mnn_tools.py, which proves it with audit hooks and strace).

Native log output (stdout/stderr of the C++ code) is captured and only shown
in error messages, condensed by ``tail``.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from zoo.core.errors import ZooError

_TAIL_CHARS = 400
_ERROR_WORDS = ("error", "fail", "support", "invalid", "can't", "cannot", "not ", "check")


@contextlib.contextmanager
def native_output() -> Iterator[list[str]]:
    """Redirect fds 1 and 2 (C/C++ printf/cout of MNN) to a temp file.

    Yields a list that receives the captured text once the block ends (also
    on exceptions).  Not thread-safe: other threads' output in this window is
    captured too.
    """
    sink: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    libc = None
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None)
    saved: list[int] = []
    with tempfile.TemporaryFile(mode="w+b") as buf:
        try:
            for fd in (1, 2):
                saved.append(os.dup(fd))
                os.dup2(buf.fileno(), fd)
        except OSError:
            # No usable fds (e.g. closed stdout): run without capturing.
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            saved = []
        try:
            yield sink
        finally:
            if libc is not None:
                with contextlib.suppress(Exception):
                    libc.fflush(None)
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            buf.seek(0)
            sink.append(buf.read().decode("utf-8", "replace"))


def tail(text: str) -> str:
    """MNN's native log condensed to one line: its error-looking lines (else
    its last lines), so a ZooError stays a single readable line."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines()
             if ln.strip() and not ln.startswith("The device supports")]  # CPU banner printed on import
    picked = [ln for ln in lines if any(w in ln.lower() for w in _ERROR_WORDS)] or lines[-3:]
    seen: list[str] = []
    for ln in picked:
        if ln not in seen:
            seen.append(ln)
    out = " | ".join(seen)
    return out if len(out) <= _TAIL_CHARS else out[: _TAIL_CHARS - 3] + "..."


def import_tools():
    """The compiled converter/quantizer (never the MNN.tools Python package)."""
    try:
        import _tools  # type: ignore[import-not-found]  # optional runtime: imported when used
    except ImportError as exc:  # pragma: no cover - depends on the env
        raise ZooError(f"MNN is not installed (no _tools extension): {exc}") from exc
    return _tools


def import_mnn():
    try:
        import MNN  # type: ignore[import-not-found]  # optional runtime: imported when used
    except ImportError as exc:  # pragma: no cover - depends on the env
        raise ZooError(f"MNN is not installed: {exc}") from exc
    return MNN


def existing_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ZooError(f"{what} not found: {p}")
    if not os.access(p, os.R_OK):
        raise ZooError(f"{what} is not readable: {p}")
    return p


def output_file(out_path: str | os.PathLike) -> Path:
    """An output path whose folder exists (nothing is created for a mistyped path)."""
    out = Path(out_path)
    if out.is_dir():
        raise ZooError(f"output path is a directory: {out}")
    if not out.parent.is_dir():
        raise ZooError(f"output folder does not exist: {out.parent}")
    return out


def load_info(path: Path) -> dict:
    """Open an .mnn the way MNN's runtime does; return its info (bizCode, ...)."""
    with native_output() as log:
        MNN = import_mnn()
        try:
            module = MNN.nn.load_module_from_file(str(path), [], [])
            info = dict(module.get_info())
        except Exception as exc:  # MNN raises bare Exception / SystemError
            info = {"error": str(exc)}
    if "error" in info:
        raise ZooError(f"MNN cannot load {path.name}: {info['error']} -- MNN: {tail(log[0])}")
    return info


def model_inputs(mnn_path: Path) -> list[tuple[str, list[int]]]:
    """(data format, shape) of every Input of an .mnn graph."""
    err = ""
    with native_output() as log:
        MNN = import_mnn()
        try:
            variables = MNN.expr.load_as_dict(str(mnn_path))
        except Exception as exc:
            variables, err = {}, str(exc)
    inputs = [v for v in variables.values() if getattr(v, "op_type", "") == "Input"]
    if not inputs:
        raise ZooError(f"not a readable MNN model (no input found): {mnn_path} {err} -- MNN: {tail(log[0])}".rstrip())
    # data_format prints as e.g. "data_format.NC4HW4"
    return [(str(v.data_format).rsplit(".", 1)[-1], [int(d) for d in v.shape]) for v in inputs]
