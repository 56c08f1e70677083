"""The Node worker core (zoo.core.node): the framed protocol, a backend's lifecycle through NodeRunner, a channel
no library can corrupt (stdout), and what a crash, a hang or a failing backend become (one line, a fresh worker
next). Tiny backends written here stand in for TF.js and onnxruntime-web; only Node.js is needed (no npm package)."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from zoo.core import node
from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta

pytestmark = pytest.mark.skipif(node.node_binary()[1] is not None, reason=f"no Node.js 18+: {node.node_binary()[1]}")

BACKENDS = {
    # doubles its input, and writes to stdout the way chatty libraries do (it must not reach the channel)
    "double.mjs": """
export async function load(ctx, options, parts) {
  console.log('hello from console.log');
  process.stdout.write('raw stdout write\\n');
  return { info: { parts: parts.map((p) => p.length), options }, batch: options.batch ?? null,
    async infer(x, shape) { return [{ name: 'y', shape, data: x.map((v) => 2 * v) }]; }, dispose() {} };
}""",
    "crash.mjs": """
export async function load() { return { async infer() { process.kill(process.pid, 'SIGSEGV'); } }; }""",
    "hang.mjs": """
export async function load() { return { infer() { for (;;) {} } }; }""",
    "fail.mjs": """
export async function load() { throw new Error('this file is not a model\\nsecond line'); }""",
}


@pytest.fixture()
def backends(tmp_path, monkeypatch):
    (tmp_path / "node_modules").mkdir()
    monkeypatch.setenv(node.ENV_MODULES, str(tmp_path / "node_modules"))
    for name, text in BACKENDS.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def meta() -> ArtifactMeta:
    return ArtifactMeta("rfb-320", "rfb", (320, 240), ("BACKGROUND", "face"), "decoded", "0" * 64)


def test_protocol_round_trip_and_a_quiet_channel(backends):
    w = node.NodeWorker(timeout=60)
    try:
        assert w.request({"op": "hello"})[0]["node"].startswith("v")
        h, info = w.load(backends / "double.mjs", {"k": 1}, [b"abc", b"de"], "double")
        assert info == {"parts": [3, 2], "options": {"k": 1}}
        x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
        ((name, y),) = w.infer(h, x, "double")
        assert name == "y" and y.shape == x.shape and np.array_equal(y, 2 * x)
        lat, extra = w.bench(h, x, 2, 5, "double")
        assert len(lat) == 5 and all(v >= 0 for v in lat) and extra["peak_rss_mb"] > 1
        assert len(extra["cpu_ms"]) == 5 and all(v >= 0 for v in extra["cpu_ms"])  # Node's own CPU time per run
        # the backend's console and stdout writes went to the log, not the channel (read before the error below:
        # its stack trace, with the checkout's paths, fills the 400 characters tail() keeps)
        assert "hello from console.log" in w.tail(10) or "raw stdout write" in w.tail(10)
        w.unload(h)
        with pytest.raises(ZooError, match="no loaded model"):
            w.infer(h, x, "double")
    finally:
        w.close()


def test_a_batch_one_model_gets_one_image_at_a_time(backends):
    w = node.NodeWorker(timeout=60)
    try:
        h, _ = w.load(backends / "double.mjs", {"batch": 1}, [], "double")
        x = np.random.default_rng(0).standard_normal((3, 3, 4, 4)).astype(np.float32)
        ((_, y),) = w.infer(h, x, "double")
        assert y.shape == x.shape and np.array_equal(y, 2 * x)
    finally:
        w.close()


def test_a_failing_backend_is_one_line_and_the_worker_lives_on(backends):
    w = node.NodeWorker(timeout=60)
    try:
        with pytest.raises(ZooError) as e:
            w.load(backends / "fail.mjs", {}, [], "loading x")
        assert str(e.value) == "loading x: this file is not a model"
        assert w.alive() and w.request({"op": "hello"})[0]["ok"]
    finally:
        w.close()


def test_a_crash_is_one_line_and_the_next_runner_gets_a_fresh_worker(backends):
    w = node.shared_worker()
    h, _ = w.load(backends / "crash.mjs", {}, [], "crash")
    with pytest.raises(ZooError, match=r"the Node worker crashed \(SIGSEGV\)"):
        w.infer(h, np.zeros((1, 1), np.float32), "crash")
    assert not w.alive()
    fresh = node.shared_worker()
    assert fresh is not w and fresh.alive()


def test_the_shared_worker_follows_the_npm_packages_it_should_load(backends, tmp_path, monkeypatch):
    """A worker started while ZOO_NODE_MODULES named one folder is not reused once it names another (or is unset):
    in one test session a unit test's empty folder otherwise outlived it, and the browser test's tfjs then failed
    with "Cannot find module '@tensorflow/tfjs-core'"."""
    first = node.shared_worker()
    assert first.modules == backends / "node_modules" and node.shared_worker() is first
    other = tmp_path / "other" / "node_modules"
    other.mkdir(parents=True)
    monkeypatch.setenv(node.ENV_MODULES, str(other))
    second = node.shared_worker()
    assert second is not first and second.modules == other and second.alive()
    second.close()


def test_a_hang_is_killed_at_the_timeout(backends):
    w = node.NodeWorker(timeout=3)
    h, _ = w.load(backends / "hang.mjs", {}, [], "hang")
    t = time.monotonic()
    with pytest.raises(ZooError, match=r"hang timed out after 3 s \(the Node worker was killed\)"):
        w.infer(h, np.zeros((1, 1), np.float32), "hang")
    assert time.monotonic() - t < 20 and not w.alive() and w.proc.poll() is not None


def test_node_runner_lifecycle(backends):
    r = node.NodeRunner(meta(), "double-web", backends / "double.mjs", lambda: [b"x"], threads=2)
    with pytest.raises(RuntimeError):
        r.infer(np.zeros((1, 3, 240, 320), np.float32))
    with r:
        assert r.info["options"] == {"threads": 2}
        with pytest.raises(ZooError, match="outputs do not match the model"):  # 'y' is no scores/boxes pair
            r.infer(np.zeros((1, 3, 240, 320), np.float32))
        assert len(r.bench(np.zeros((1, 3, 240, 320), np.float32), 1, 3)) == 3
    assert r.handle is None


def test_missing_node_or_packages_are_reported_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv(node.ENV_NODE, str(tmp_path / "no-node"))
    assert "is not an executable file" in node.web_runtime_problem(())
    with pytest.raises(ZooError, match="cannot start the Node worker"):
        node.NodeWorker()
    monkeypatch.setenv(node.ENV_NODE, shutil.which("node"))
    monkeypatch.setenv(node.ENV_MODULES, str(tmp_path / "empty"))
    why = node.web_runtime_problem(("onnxruntime-web",))
    assert why.startswith("the npm package onnxruntime-web not installed") and "scripts/install.sh" in why
