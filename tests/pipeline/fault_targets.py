"""Export targets that fail on purpose, loaded through ZOO_TARGET_PLUGINS to inject faults."""
from __future__ import annotations

import os
import signal
import time

from zoo.exporters.base import Target


class _Fault(Target):
    source = "torch"
    precisions = ("fp32",)
    heads = ("raw",)
    timeout = 20.0

    def _half_write(self, req):
        # a converter that dies mid-write leaves a partial file behind in its private folder
        (req.out_dir / f"{req.stem}.partial").write_bytes(b"\0" * 1000)


class CrashTarget(_Fault):
    name = "crash"

    def export(self, req):
        self._half_write(req)
        os.kill(os.getpid(), signal.SIGSEGV)


class HangTarget(_Fault):
    name = "hang"
    timeout = 3.0

    def export(self, req):
        self._half_write(req)
        time.sleep(3600)


class RaiseTarget(_Fault):
    name = "boom"

    def export(self, req):
        self._half_write(req)
        raise RuntimeError("converter exploded")


class MissingTarget(_Fault):
    name = "missing"
    requires = ("no_such_runtime_module_xyz",)
    extra = "missing"


from zoo.exporters.onnx import OnnxTarget  # noqa: E402


class SlowOnnxTarget(OnnxTarget):
    """The ONNX target after a pause (ZOO_TEST_SLOW_SECONDS), to interrupt a release mid-way."""

    name = "slowonnx"

    def export(self, req):
        (req.out_dir / f"{req.stem}.partial").write_bytes(b"\0" * 1000)
        time.sleep(float(os.environ.get("ZOO_TEST_SLOW_SECONDS", "0")))
        (req.out_dir / f"{req.stem}.partial").unlink()
        return super().export(req)
