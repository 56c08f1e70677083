"""ONNX int8: static QDQ quantization with onnxruntime's quantizer."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from exporters.onnx.convert import INPUT_NAME


def to_int8(model, calib: np.ndarray):
    """Static QDQ int8 (per-channel weights, calibrated activations) with onnxruntime's quantizer."""
    import onnx  # heavy
    from onnxruntime.quantization import (  # heavy: imported when used
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{INPUT_NAME: calib[i : i + 1]} for i in range(calib.shape[0])])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as td:
        src, dst = Path(td) / "fp32.onnx", Path(td) / "int8.onnx"
        onnx.save(model, str(src))
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # keep the final softmax and the box head's output layers in float
            nodes_to_exclude=[n.name for n in model.graph.node if n.op_type in ("Softmax",)],
        )
        return onnx.load(str(dst))
