"""ONNX int8: static QDQ quantization with onnxruntime's quantizer."""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from zoo.exporters.onnx.convert import INPUT_NAME
from zoo.exporters.onnx.quiet import import_onnxruntime
from zoo.core.model.layers import onnx_module_name


#: activation calibration methods tried (each scored across kinds of calibration image; see OnnxTarget._int8)
CALIB_METHODS = ("MinMax", "Percentile")
#: the methods whose activation ranges are not clipped (preferred within the choice's margin)
UNCLIPPED = ("MinMax",)
PERCENTILE = 99.999


def to_int8(model, calib: np.ndarray, keep_modules: list[str] = (), method: str = "MinMax"):
    """Static QDQ int8 (per-channel weights, calibrated activations) with onnxruntime's quantizer;
    the convolutions of ``keep_modules`` (PyTorch module names, the model-level sensitivity
    analysis) stay float, with those of `float_kept`. ``method``: MinMax, or Percentile
    (activation ranges at the PERCENTILE-th percentile of |x|)."""
    import onnx  # heavy

    import_onnxruntime()
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

    with tempfile.TemporaryDirectory() as td, _one_thread_sessions():
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
            calibrate_method=getattr(CalibrationMethod, method),
            nodes_to_exclude=float_kept(model) + conv_nodes(model, keep_modules),
            extra_options={"CalibPercentile": PERCENTILE} if method == "Percentile" else {},
        )
        return onnx.load(str(dst))


@contextmanager
def _one_thread_sessions():
    """onnxruntime's calibrator opens its session with default options: a thread per core, spinning
    while it waits. Its activations then depend in the last bits on the machine's core count (so did
    the int8 file: rfb-640's differed between 1 and 2 threads), and beside the other jobs of a run the
    spinning costs CPU (rfb-640 Percentile on an idle machine: 15.0 s of CPU in 11.9 s with 2 threads,
    8.8 s in 8.8 s with one). Within this block every new session runs on one thread."""
    onnxruntime = import_onnxruntime()
    default = onnxruntime.SessionOptions

    def one_thread():
        o = default()
        o.intra_op_num_threads = 1
        o.inter_op_num_threads = 1
        return o

    onnxruntime.SessionOptions = one_thread
    try:
        yield
    finally:
        onnxruntime.SessionOptions = default


def conv_nodes(model, modules) -> list[str]:
    """The Conv nodes exported from the PyTorch ``modules`` (by torch.onnx's scope names)."""
    wanted = set(modules)
    return [n.name for n in model.graph.node if n.op_type == "Conv" and onnx_module_name(n.name) in wanted]


def float_kept(model) -> list[str]:
    """Nodes left in float: the final softmax, and the convolutions that read the network input.

    The first convolution sees the normalised image, whose 3 channels are quantised badly by one
    activation scale; in float it costs ~340 bytes (432 weights), and with onnxruntime 1.32 it is
    the difference between losing 2-3% of the faces and none (rfb-320 on ../shared/images: 279/287
    with 5 extra, against 284/284 with it in float; the same choice ncnn's quantizer makes).
    """
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node
            if n.op_type == "Softmax" or (n.op_type == "Conv" and n.input and n.input[0] in inputs)] + decode_tail(model)


def decode_tail(model) -> list[str]:
    """The decoded head's own nodes (issue 39): what runs after the last convolution and feeds none
    (reshapes, softmax, the prior arithmetic: exponentials, products and sums with the prior constants),
    when that tail decodes boxes (it holds an Exp). Left in float, as the original's decoded file computes
    it: quantising the prior arithmetic put corners off by a few uint8 steps of the whole image (rfb-320
    decoded int8 with the tail quantised: 285/291 faces with 6 extra). A raw head's tail has no Exp:
    nothing changes for it."""
    producer = {o: n for n in model.graph.node for o in n.output}
    feeds_conv: set[str] = set()
    todo = [n for n in model.graph.node if n.op_type == "Conv"]
    while todo:
        n = todo.pop()
        if n.name in feeds_conv:
            continue
        feeds_conv.add(n.name)
        todo.extend(producer[i] for i in n.input if i in producer)
    tail = [n for n in model.graph.node if n.name not in feeds_conv and n.op_type != "Conv"]
    return [n.name for n in tail] if any(n.op_type == "Exp" for n in tail) else []


def float_kept_nodes(qmodel) -> list[str]:
    """The Conv nodes of a QDQ model that compute in float (their weight is not dequantized)."""
    dq_outputs = {o for n in qmodel.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in qmodel.graph.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] not in dq_outputs]
