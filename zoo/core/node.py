"""Web runtimes in Node: one long-lived Node worker per process, behind a small framed protocol.

    worker = shared_worker()                      # started on first use, restarted after a crash
    h, info = worker.load(BACKEND_MJS, {"threads": 1}, [model_bytes])
    outs = worker.infer(h, x)                     # [(name, float32 array)]
    worker.unload(h)

or, as a runner (the lifecycle every runtime shares): ``NodeRunner(meta, backend, parts_fn, options)``.

The worker (``node_worker.mjs`` beside this file) is started with the project's npm packages
(``node_modules``, installed by ``scripts/install.sh`` with ``npm ci`` from the committed lockfile);
each request waits at most its timeout, after which the process is killed (a hang is one line, and the
next request starts a fresh worker); a crash (EOF on the channel) is one line with the end of the
worker's stderr. Every format-specific part (TF.js, onnxruntime-web) is a backend module that the
target packages ship; this module knows none of them.

Availability: Node.js 18 or later (``ZOO_NODE``, else ``node`` on PATH) and the npm packages a backend
needs, in ``ZOO_NODE_MODULES`` or the source checkout's ``node_modules`` (`web_runtime_problem`).
Nothing here reaches the network: models are handed over as bytes, the WebAssembly files are read from
``node_modules``.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta
from zoo.core.runtime import Runner

WORKER_JS = Path(__file__).with_name("node_worker.mjs")
MIN_NODE = 18
ENV_NODE = "ZOO_NODE"
ENV_MODULES = "ZOO_NODE_MODULES"
ENV_TIMEOUT = "ZOO_NODE_TIMEOUT"
DEFAULT_TIMEOUT = 300.0  # seconds one request may take (a load of the wasm runtime included)
INSTALL_HINT = "run `bash scripts/install.sh` in a source checkout (npm ci into ./node_modules), or set ZOO_NODE_MODULES"
#: what to do when a web runtime is missing (zoo list)
WEB_INSTALL = ("Node.js 18 or later with npm (Debian: apt-get install nodejs npm), then `bash scripts/install.sh` "
               "(npm ci of the committed package-lock.json into ./node_modules)")
MAX_FRAME = 1 << 30


# --------------------------------------------------------------------------- availability

@lru_cache(maxsize=None)
def _node_version(exe: str) -> tuple[int, ...] | None:
    try:
        cp = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    text = cp.stdout.strip().lstrip("v")
    try:
        return tuple(int(p) for p in text.split(".")[:3])
    except ValueError:
        return None


def node_binary() -> tuple[str | None, str | None]:
    """(path of a usable node, None) or (None, why not)."""
    given = os.environ.get(ENV_NODE)
    exe = given if given else shutil.which("node")
    if not exe:
        return None, f"Node.js {MIN_NODE} or later is not installed (no `node` on PATH; install nodejs, or set {ENV_NODE})"
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return None, f"{ENV_NODE}={exe} is not an executable file"
    version = _node_version(exe)
    if version is None:
        return None, f"{exe} does not answer `--version`: not a working Node.js"
    if version[0] < MIN_NODE:
        return None, f"{exe} is Node.js {'.'.join(map(str, version))}; the web runtimes need {MIN_NODE} or later"
    return exe, None


def project_root() -> Path:
    """The folder holding the `zoo` package (a source checkout's root, where package.json is)."""
    return Path(__file__).resolve().parents[2]


def node_modules() -> Path:
    given = os.environ.get(ENV_MODULES)
    return Path(given) if given else project_root() / "node_modules"


def _package_version(folder: Path, name: str) -> str | None:
    try:
        return json.loads((folder / name / "package.json").read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return None


def missing_packages(packages: tuple[str, ...] | list[str]) -> list[str]:
    """The npm packages (of ``packages``) that ``node_modules()`` does not hold."""
    folder = node_modules()
    return [p for p in packages if _package_version(folder, p) is None]


def web_runtime_problem(packages: tuple[str, ...] | list[str]) -> str | None:
    """Why a web runtime needing ``packages`` cannot run here (None: it can)."""
    _, why = node_binary()
    if why:
        return why
    miss = missing_packages(packages)
    if miss:
        return f"the npm package{'s' if len(miss) > 1 else ''} {', '.join(miss)} not installed in {node_modules()}: {INSTALL_HINT}"
    return None


def package_versions(packages) -> dict[str, str]:
    folder = node_modules()
    out = {p: v for p in packages if (v := _package_version(folder, p))}
    exe, _ = node_binary()
    if exe and (v := _node_version(exe)):
        out["node"] = ".".join(map(str, v))
    return out


# --------------------------------------------------------------------------- the worker

def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return str(-rc)


class NodeWorker:
    """One Node process running node_worker.mjs; requests are sent one at a time (thread-safe)."""

    def __init__(self, timeout: float | None = None):
        exe, why = node_binary()
        if why:
            raise ZooError(f"cannot start the Node worker: {why}")
        mods = node_modules()
        if not mods.is_dir():
            raise ZooError(f"cannot start the Node worker: no npm packages at {mods}: {INSTALL_HINT}")
        self.timeout = float(timeout or os.environ.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT)
        self._log = tempfile.TemporaryFile(prefix="zoo-node-", suffix=".log")
        self._lock = threading.Lock()
        # not a session of its own: killing the Python process group (an isolated worker's timeout) ends it too
        self.modules = mods  # the packages it loads (shared_worker starts another when they change)
        self.proc = subprocess.Popen([exe, "--no-warnings", str(WORKER_JS), str(mods)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env=self._env())
        self.dead: str | None = None

    @staticmethod
    def _env() -> dict:
        env = dict(os.environ)
        env.pop("NODE_PATH", None)  # packages come from our node_modules only
        return env

    def alive(self) -> bool:
        return self.dead is None and self.proc.poll() is None

    def tail(self, n: int = 3) -> str:
        try:
            self._log.seek(0)
            lines = [l.strip() for l in self._log.read().decode(errors="replace").splitlines() if l.strip()]
        except (OSError, ValueError):
            return ""
        return " | ".join(lines[-n:])[-400:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self.dead = self.dead or "closed"

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()

    def _fail(self, why: str) -> ZooError:
        self.dead = why
        return ZooError(why)

    def _read(self, n: int, deadline: float, what: str) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise self._fail(f"{what} timed out after {self.timeout:.0f} s (the Node worker was killed)")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            b = os.read(fd, min(n - got, 1 << 20))
            if not b:
                rc = self.proc.wait()
                how = f"crashed ({_signal_name(rc)})" if rc < 0 else f"exited with code {rc}"
                raise self._fail(f"{what}: the Node worker {how}; last output: {self.tail() or 'none'}")
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def request(self, msg: dict, payload: bytes = b"", what: str = "the Node worker", timeout: float | None = None):
        """(reply JSON, reply bytes); a ZooError for a failure the worker reports, a crash or a timeout."""
        with self._lock:
            if not self.alive():
                raise ZooError(f"{what}: the Node worker is not running ({self.dead or 'exited'})")
            js = json.dumps(msg).encode()
            try:
                self.proc.stdin.write(struct.pack("<II", len(js), len(payload)) + js)
                self.proc.stdin.write(payload)
                self.proc.stdin.flush()
            except OSError:
                pass  # it died: the read below says how
            deadline = time.monotonic() + (timeout or self.timeout)
            jl, bl = struct.unpack("<II", self._read(8, deadline, what))
            if jl > MAX_FRAME or bl > MAX_FRAME:
                self.kill()
                raise self._fail(f"{what}: the Node worker broke the protocol (frame of {jl}+{bl} bytes)")
            try:
                reply = json.loads(self._read(jl, deadline, what))
            except ValueError:
                self.kill()
                raise self._fail(f"{what}: the Node worker broke the protocol (reply is not JSON)") from None
            data = self._read(bl, deadline, what) if bl else b""
        if not reply.get("ok"):
            raise ZooError(f"{what}: {reply.get('error', 'failed')}")
        return reply, data

    # ------------------------------------------------------------------ operations
    def load(self, backend: Path, options: dict, parts: list[bytes], what: str) -> tuple[int, dict]:
        reply, _ = self.request({"op": "load", "backend": str(backend), "options": options,
                                 "parts": [len(p) for p in parts]}, b"".join(parts), what)
        return int(reply["handle"]), reply.get("info", {})

    def infer(self, handle: int, x: np.ndarray, what: str) -> list[tuple[str, np.ndarray]]:
        x = np.ascontiguousarray(x, dtype="<f4")
        reply, data = self.request({"op": "infer", "handle": handle, "shape": list(x.shape)}, x.tobytes(), what)
        out, at = [], 0
        for o in reply["outputs"]:
            n = int(o["bytes"])
            shape = [int(s) for s in o["shape"]]
            arr = np.frombuffer(data[at:at + n], dtype="<f4")
            if arr.size != int(np.prod(shape)):
                raise ZooError(f"{what}: output {o['name']} has {arr.size} values for shape {shape}")
            out.append((str(o["name"]), arr.reshape(shape).astype(np.float32)))
            at += n
        return out

    def bench(self, handle: int, x: np.ndarray, warmup: int, runs: int, what: str) -> tuple[list[float], dict]:
        """(latencies in ms timed inside Node, {"peak_rss_mb": the Node process's peak RSS, "cpu_ms": the Node
        process's CPU time of each run})."""
        x = np.ascontiguousarray(x, dtype="<f4")
        reply, _ = self.request({"op": "bench", "handle": handle, "shape": list(x.shape), "warmup": int(warmup),
                                 "runs": int(runs)}, x.tobytes(), what)
        return [float(v) for v in reply["latencies_ms"]], {"peak_rss_mb": float(reply.get("max_rss_kb", 0)) / 1024.0,
                                                          "cpu_ms": [float(v) for v in reply.get("cpu_ms", [])]}

    def unload(self, handle: int) -> None:
        if self.alive():
            try:
                self.request({"op": "unload", "handle": handle}, timeout=30)
            except ZooError:
                pass


_SHARED: NodeWorker | None = None
_SHARED_LOCK = threading.Lock()


def shared_worker() -> NodeWorker:
    """The process's one Node worker (started on first use; a fresh one after a crash or timeout, or when the npm
    packages to load from changed: ``ZOO_NODE_MODULES`` set or unset since it started)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or not _SHARED.alive() or _SHARED.modules != node_modules():
            if _SHARED is not None:
                _SHARED.close()
            _SHARED = NodeWorker()
        return _SHARED


@atexit.register
def _close_shared() -> None:
    if _SHARED is not None:
        _SHARED.close()


# --------------------------------------------------------------------------- the runner

class NodeRunner(Runner):
    """A web runtime as a `Runner`: the model loaded into the shared Node worker on ``__enter__``
    (``parts()``: the files' bytes, read and checked by the target), unloaded on ``__exit__``.
    ``layout="NHWC"`` feeds channels-last input. ``bench`` times inference inside Node (no pipe)."""

    def __init__(self, meta: ArtifactMeta, name: str, backend: Path, parts, options: dict | None = None,
                 threads: int = 1, layout: str = "NCHW", packages: tuple[str, ...] = ()):
        super().__init__(meta, threads)
        self.name, self.backend, self.parts, self.layout = name, Path(backend), parts, layout
        self.options = {**(options or {}), "threads": self.threads}
        self.packages = packages
        self.handle: int | None = None
        self.worker: NodeWorker | None = None
        self.info: dict = {}

    def _load(self) -> None:
        why = web_runtime_problem(self.packages)
        if why:
            raise ZooError(f"runtime {self.name} is not available: {why}")
        parts = self.parts()
        self.worker = shared_worker()
        self.handle, self.info = self.worker.load(self.backend, self.options, parts, f"{self.name} loading the model")

    def _unload(self) -> None:
        if self.worker is not None and self.handle is not None:
            self.worker.unload(self.handle)
        self.handle = self.worker = None

    def _input(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if self.layout == "NHWC" else x

    def _run(self, x):
        return self.worker.infer(self.handle, self._input(x), f"{self.name} inference")

    def bench(self, x: np.ndarray, warmup: int, runs: int) -> list[float]:
        """Latencies (ms) of ``runs`` inferences on ``x`` after ``warmup``, timed inside Node."""
        if not self._active:
            raise RuntimeError(f"{type(self).__name__}.bench called outside `with runner:`")
        lat, self._bench_info = self.worker.bench(self.handle, self._input(np.ascontiguousarray(x, dtype=np.float32)),
                                                  warmup, runs, f"{self.name} benchmark")
        return lat

    def bench_info(self) -> dict:
        """What the last `bench` measured beside the latencies (the Node process's peak RSS, MiB)."""
        return dict(getattr(self, "_bench_info", {}))
