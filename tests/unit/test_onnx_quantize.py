"""ONNX int8 calibration runs onnxruntime on one thread (exporters/onnx/quantize.py): its activation
ranges, hence the int8 file, must not depend on the machine's core count, and the threads of a
calibration session must not spin beside a run's other jobs."""
from __future__ import annotations

import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from zoo.exporters.onnx.quantize import _one_thread_sessions  # noqa: E402


def test_calibration_sessions_run_on_one_thread_and_the_default_comes_back():
    assert ort.SessionOptions().intra_op_num_threads == 0  # onnxruntime's default: a thread per core
    with _one_thread_sessions():
        # what onnxruntime.quantization.calibrate does to open its session
        from onnxruntime.quantization import calibrate

        o = calibrate.onnxruntime.SessionOptions()
        assert (o.intra_op_num_threads, o.inter_op_num_threads) == (1, 1)
    assert ort.SessionOptions().intra_op_num_threads == 0
    with pytest.raises(KeyError):
        with _one_thread_sessions():
            raise KeyError("a failed quantization")
    assert ort.SessionOptions is not None and ort.SessionOptions().intra_op_num_threads == 0
