"""Run work in a fresh interpreter with a timeout: a crash, hang or flood of native logs only
takes that process down. Used by exports, checks, verification and benchmarks.

Parent: ``run_isolated("pkg.worker", [...], job, work, timeout, name)`` writes ``job`` as JSON,
starts ``python -m pkg.worker ... JOB RESULT`` in its own session, and returns the RESULT JSON,
or ``{"ok": False, "error": ...}`` for a timeout (killed), a signal or an exit without result.
Child: ``worker_main(argv, run)`` reads the job, calls ``run(job)`` and writes the result.

Warm workers (`WarmWorkers`): the same worker module started once per family (e.g. one export
target) and handed one job after another, so a run pays a runtime's imports (TensorFlow ~8 s,
torch ~3.5 s) once per family instead of once per job. The guarantees stay those of a fresh
process per job: each job has its own log, timeout and result; a job that crashes, hangs (killed
at its timeout) or fails takes its process with it, and the next job of that family starts a fresh
one. A family whose converter keeps process-global state that would leak into its files must not
be run warm (the tests build an artifact warm after other jobs and fresh, and compare the bytes).

``python``: another interpreter (e.g. a `zoo compat` runtime environment) instead of this one; with
``pythonpath`` its import path is exactly those folders (no PYTHONPATH inherited from this process).

``launcher``: a command prefix the worker is started through, e.g. an emulator
(``["qemu-aarch64-static", "-cpu", "cortex-a76", "-L", ROOT]`` for an aarch64 interpreter, or
``["qemu-x86_64-static", "-cpu", "Haswell"]`` for this one on an older x86 CPU). The emulator is
started explicitly, never through binfmt_misc (kernel-wide state). A process started through a
prefix finds it in ``ZOO_LAUNCHER`` (a JSON list), and ``launcher=None`` (the default) means that
prefix: the workers a worker starts run through the same emulator, and a whole run started with
``ZOO_LAUNCHER`` set starts all of its workers through it. ``launcher=[]`` starts one natively.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text
from zoo.core.telemetry import child_env

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


LAUNCHER_ENV = "ZOO_LAUNCHER"  # the prefix a worker was started through (JSON list), for its own children


def worker_command(module: str, args: list[str], python: str | None = None,
                   launcher: list[str] | None = None) -> list[str]:
    """``[*launcher, python, -m, module, *args]``: how every isolated worker is started."""
    return [*(launcher or []), python or sys.executable, "-m", module, *args]


def launcher_of_this_process() -> list[str]:
    """The command prefix this process was started through (``ZOO_LAUNCHER``), or []."""
    try:
        got = json.loads(os.environ.get(LAUNCHER_ENV) or "[]")
    except ValueError:
        return []
    return [str(a) for a in got] if isinstance(got, list) else []


def run_isolated(module: str, args: list[str], job: dict, work: Path, timeout: float, name: str,
                 env_extra: dict | None = None, what: str = "converter", python: str | None = None,
                 pythonpath: list[str] | None = None, launcher: list[str] | None = None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    job_path, result_path, log_path = work / f"{name}.job.json", work / f"{name}.result.json", work / f"{name}.log"
    job_path.write_text(json.dumps(job))
    launcher = launcher_of_this_process() if launcher is None else launcher
    env = _child_env(env_extra, pythonpath, launcher)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            worker_command(module, [*args, str(job_path), str(result_path)], python, launcher),
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
        return {"ok": False, "error": f"{what} crashed ({_signal_name(rc)}); last output: {_tail(log_path) or 'none'}"}
    return {"ok": False, "error": f"{what} exited with code {rc} without a result; last output: {_tail(log_path) or 'none'}"}


def _child_env(env_extra: dict | None, pythonpath: list[str] | None = None,
               launcher: list[str] | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env = child_env({**env, **(env_extra or {})})  # the libraries' usage reporting off, whatever env_extra says
    if launcher:
        env[LAUNCHER_ENV] = json.dumps(list(launcher))
    else:
        env.pop(LAUNCHER_ENV, None)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the `zoo` package
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        env.pop("PYTHONHOME", None)
    else:
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return str(-rc)


class _Warm:
    """One warm worker process: jobs in on stdin (a JSON line each), "done" lines out on stdout."""

    def __init__(self, module: str, work: Path, env: dict, launcher: list[str] | None = None, python: str | None = None):
        work.mkdir(parents=True, exist_ok=True)
        self.boot_log = work / f".warm-{id(self)}.log"
        with open(self.boot_log, "wb") as log:
            self.proc = subprocess.Popen(
                worker_command(module, ["--serve"], python, launcher), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, env=env, start_new_session=True,
            )
        self.jobs = 0

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def run(self, job_path: Path, result_path: Path, log_path: Path, timeout: float, what: str) -> dict:
        """The job's result; on a timeout, a crash or a lost channel the process is dead afterwards."""
        line = json.dumps({"job": str(job_path), "result": str(result_path), "log": str(log_path)}) + "\n"
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except OSError:
            pass  # it died between jobs: reported below as a crash
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                return {"ok": False, "error": f"{what} timed out after {timeout:.0f} s (killed)"}
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                got = self.proc.stdout.readline()
                if got.strip() == b"done":
                    self.jobs += 1
                    break
                if got:  # anything else on the channel: not our protocol; do not trust the process
                    continue
                rc = self.proc.wait()  # end of the channel: the process is gone
                if result_path.is_file():
                    break
                why = (f"{what} crashed ({_signal_name(rc)})" if rc < 0 else
                       f"{what} exited with code {rc} without a result")
                return {"ok": False, "error": f"{why}; last output: {_tail(log_path) or 'none'}"}
        if result_path.is_file():
            return json.loads(result_path.read_text())
        self.kill()
        return {"ok": False, "error": f"{what} wrote no result; last output: {_tail(log_path) or 'none'}"}


class WarmWorkers:
    """Warm worker processes per family, for one run (``with WarmWorkers(module) as warm:``).

    ``warm.run(family, job, work, timeout, name)`` behaves as ``run_isolated`` (same files, same
    errors, the same ``python``, ``pythonpath`` and ``launcher``) but reuses an idle process of that family; a process that did not answer cleanly is
    killed and never reused. ``close()`` (the ``with`` block's end) stops them all.
    """

    def __init__(self, module: str, env_extra: dict | None = None, launcher: list[str] | None = None,
                 python: str | None = None, pythonpath: list[str] | None = None):
        self.launcher = launcher_of_this_process() if launcher is None else launcher
        self.module, self.python, self.env = module, python, _child_env(env_extra, pythonpath, self.launcher)
        self._idle: dict[str, list[_Warm]] = {}
        self._pending: dict[str, list[threading.Thread]] = {}
        self._lock = threading.Lock()
        self.started = 0
        self.warmups: list[dict] = []  # each prestart's result (with its timings), for profiles

    def prestart(self, family: str, job: dict, work: Path, timeout: float, name: str) -> None:
        """Start a process of ``family`` now and run ``job`` in it in the background (a warm-up: the
        family's slow imports, while other work goes on). The family's next ``run`` waits for it and
        then takes that process; a warm-up that fails leaves no process behind (the job then starts
        its own, as without a warm-up). Nothing is started when a process of ``family`` is idle or
        warming up already (builds running side by side ask at the same time)."""
        def go():
            started = time.time()
            res = self.run(family, job, work, timeout, name, _warmup=True)
            with self._lock:
                self.warmups.append({"family": family, "started": started, "done": time.time(), "result": res})

        t = threading.Thread(target=go, name=f"warmup-{name}", daemon=True)
        with self._lock:
            if self._idle.get(family) or self._pending.get(family):
                return
            self._pending.setdefault(family, []).append(t)
        t.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def take_warmups(self) -> list[dict]:
        """The warm-ups finished since the last call (for profiles)."""
        with self._lock:
            out, self.warmups = self.warmups, []
        return out

    def run(self, family: str, job: dict, work: Path, timeout: float, name: str, what: str = "converter",
            _warmup: bool = False) -> dict:
        if not _warmup:  # a warm-up of this family under way: its process is the one to take
            with self._lock:
                pending = self._pending.pop(family, [])
            for t in pending:
                t.join()
        work.mkdir(parents=True, exist_ok=True)
        job_path, result_path, log_path = work / f"{name}.job.json", work / f"{name}.result.json", work / f"{name}.log"
        job_path.write_text(json.dumps(job))
        result_path.unlink(missing_ok=True)
        with self._lock:
            idle = self._idle.get(family) or []
            w = idle.pop() if idle else None
        if w is None or w.proc.poll() is not None:
            if w is not None:
                w.kill()
            w = _Warm(self.module, work, self.env, self.launcher, self.python)
            with self._lock:
                self.started += 1
        _ACTIVE.add(w.proc)
        try:
            res = w.run(job_path, result_path, log_path, timeout, what)
        except BaseException:
            w.kill()
            raise
        finally:
            _ACTIVE.discard(w.proc)
        if res.get("ok") and w.proc.poll() is None:
            with self._lock:
                self._idle.setdefault(family, []).append(w)
        else:  # any failure: this process is not trusted with another job
            w.kill()
        return res

    def close(self) -> None:
        with self._lock:
            pending = [t for ts in self._pending.values() for t in ts]
            self._pending.clear()
        for t in pending:  # a warm-up still running ends (its process then stopped below)
            t.join()
        with self._lock:
            procs = [w for ws in self._idle.values() for w in ws]
            self._idle.clear()
        for w in procs:
            w.kill()


def _run_job(job_path: Path, result_path: Path, run) -> None:
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


def _serve(run) -> int:
    """A warm worker: one job per line of stdin, its output into the job's own log, "done" on the
    original stdout once its result is written. Ends at the end of stdin."""
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    requests = os.fdopen(os.dup(0), "rb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # a converter must not read our channel
    for line in requests:
        if not line.strip():
            continue
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        _run_job(Path(req["job"]), Path(req["result"]), run)
        sys.stdout.flush()
        sys.stderr.flush()
        channel.write(b"done\n")
    return 0


def worker_main(argv: list[str], run) -> int:
    """The child side: ``argv`` ends with JOB RESULT; ``run(job)`` returns the result dict.
    ``--serve``: a warm worker (`WarmWorkers`), jobs read from stdin one after another."""
    if argv == ["--serve"]:
        return _serve(run)
    _run_job(Path(argv[-2]), Path(argv[-1]), run)
    return 0
