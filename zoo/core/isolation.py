"""Run work in a fresh interpreter with a timeout: a crash, hang or flood of native logs only
takes that process down. Used by exports, checks, verification and benchmarks.

Parent: ``run_isolated("pkg.worker", [...], job, work, timeout, name)`` writes ``job`` as JSON,
starts ``python -m pkg.worker ... JOB RESULT`` in its own session, and returns the RESULT JSON,
or ``{"ok": False, "error": ...}`` for a timeout (killed), a signal or an exit without result.
Child: ``worker_main(argv, run)`` reads the job, calls ``run(job)`` and writes the result.

``python``: another interpreter (e.g. a `zoo compat` runtime environment) instead of this one; with
``pythonpath`` its import path is exactly those folders (no PYTHONPATH inherited from this process).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text

_ACTIVE: set = set()  # worker processes running now (killed on interrupt)


def kill_active_workers() -> None:
    for proc in list(_ACTIVE):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _tail(log: Path, n: int = 3) -> str:
    try:
        lines = [l.strip() for l in log.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-400:]


def run_isolated(module: str, args: list[str], job: dict, work: Path, timeout: float, name: str,
                 env_extra: dict | None = None, what: str = "converter", python: str | None = None,
                 pythonpath: list[str] | None = None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    job_path, result_path, log_path = work / f"{name}.job.json", work / f"{name}.result.json", work / f"{name}.log"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(env_extra or {})
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the `zoo` package
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        env.pop("PYTHONHOME", None)
    else:
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [python or sys.executable, "-m", module, *args, str(job_path), str(result_path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        _ACTIVE.add(proc)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"ok": False, "error": f"{what} timed out after {timeout:.0f} s (killed)"}
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            _ACTIVE.discard(proc)
    if result_path.is_file():
        return json.loads(result_path.read_text())
    if rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = str(-rc)
        return {"ok": False, "error": f"{what} crashed ({sig}); last output: {_tail(log_path) or 'none'}"}
    return {"ok": False, "error": f"{what} exited with code {rc} without a result; last output: {_tail(log_path) or 'none'}"}


def worker_main(argv: list[str], run) -> int:
    """The child side: ``argv`` ends with JOB RESULT; ``run(job)`` returns the result dict."""
    job_path, result_path = Path(argv[-2]), Path(argv[-1])
    job = json.loads(job_path.read_text())
    try:
        result = run(job)
    except ZooError as e:
        result = {"ok": False, "error": str(e)}
    except Exception as e:  # noqa: BLE001 - any failure is this job's error, reported by the parent
        sys.stderr.write(traceback.format_exc())
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        result = {"ok": False, "error": f"{type(e).__name__}: {msg}"}
    atomic_write_text(result_path, json.dumps(result))
    return 0
