"""Open an artifact in an isolated worker before opening it in this process.

Native runtimes (MNN, ncnn, LiteRT, OpenCV, onnxruntime, TensorFlow) can crash or hang on a
corrupt file; ``probe_artifact`` loads the artifact and runs one inference on zeros in a child
process (``zoo.pipeline.worker``, job kind "probe") with a timeout, so a SIGSEGV, an abort or a hang
becomes one clear ZooError naming the file instead of taking `zoo` down. The child also checks that
the outputs are what the metadata says (a sidecar that disagrees with its file is refused).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from zoo.exporters import get_target
from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta, companion, file_suffix
from zoo.pipeline.worker import run_worker

#: seconds a probe may take (loading TensorFlow alone takes ~10 s on a small machine)
DEFAULT_TIMEOUT = 120.0


def probe_timeout() -> float:
    raw = os.environ.get("ZOO_PROBE_TIMEOUT", "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise ZooError(f"ZOO_PROBE_TIMEOUT must be a number of seconds, got {raw!r}") from None


def _one_line(text: str, limit: int = 400) -> str:
    return " | ".join(l.strip() for l in str(text).splitlines() if l.strip())[:limit]


def describe_files(primary: Path, suffixes: tuple[str, ...]) -> str:
    """``primary``, plus the companion files beside it (``x.param + x.bin``)."""
    primary = Path(primary)
    companions = [companion(primary, s).name for s in suffixes[1:]
                  if file_suffix(primary.name) == suffixes[0] and companion(primary, s).is_file()]
    return " + ".join([str(primary), *companions])


def probe_error(result: dict, primary: Path, runtime: str, fmt: str, files: str, timeout: float) -> str:
    """The one line for a failed probe ``result`` (as run_worker returns it)."""
    err = _one_line(result.get("error") or "no reason given")
    bad_file = f"the file is corrupt or not a {fmt} model"
    if m := re.match(r"runtime crashed \((\w+)\)", err):
        return f"{files}: {runtime} crashed opening it ({m.group(1)}); {bad_file}"
    if err.startswith("runtime timed out"):
        return f"{files}: {runtime} hung opening it (killed after {timeout:g} s); {bad_file}"
    if m := re.match(r"runtime exited with code (-?\d+)", err):
        return f"{files}: {runtime} exited (code {m.group(1)}) opening it; {bad_file}"
    if result.get("problem") == "mismatch":
        return f"{primary}: {err}; its metadata does not describe this file (a sidecar of another artifact?)"
    if result.get("problem") == "corrupt":
        return f"{files}: {err}; {bad_file}"
    if Path(primary).stem in err:
        return err
    return f"{files}: {runtime} cannot run it: {err}"


def probe_artifact(primary: Path, meta: ArtifactMeta, runtime: str | None = None, threads: int = 1,
                   check_head: bool = True, timeout: float | None = None) -> None:
    """Load ``primary`` and run it once on zeros in a child process; a ZooError naming the file if
    that crashes, hangs, fails, gives outputs no model of the family gives (NaN, absurd boxes) or,
    with ``check_head``, outputs of another head than its metadata declares."""
    target = get_target(meta.target)
    target.require()
    rt = target.check_runtime(runtime)
    timeout = probe_timeout() if timeout is None else float(timeout)
    job = {"kind": "probe", "target": meta.target, "meta": meta.to_dict(), "primary": str(primary),
           "threads": threads, "runtime": rt, "check_head": check_head}
    with tempfile.TemporaryDirectory(prefix="zoo-probe-") as td:
        res = run_worker(job, Path(td), timeout, "probe")
    if not res.get("ok"):
        raise ZooError(probe_error(res, Path(primary), rt, target.name, describe_files(primary, target.suffixes), timeout))
