"""SavedModel -> ``.tflite`` with TFLiteConverter (fp32, fp16 weights, int8), and what a ``.tflite`` holds."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo.exporters.tflite.network import INPUT_NAME, SIGNATURE_KEY, conv_module
from zoo.exporters.tflite.runner import signature_io
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes
from zoo.core.manifest import PRECISIONS

#: the TFLite ops of a convolution
_TFLITE_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _saved_model_input_shape(tf: Any, saved_model_dir: Path) -> tuple[int, ...]:
    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
    except Exception as exc:
        raise ZooError(f"cannot load SavedModel {saved_model_dir}: {exc}") from None
    try:
        fn = loaded.signatures[SIGNATURE_KEY]
    except KeyError:
        raise ZooError(f"SavedModel {saved_model_dir} has no {SIGNATURE_KEY!r} signature") from None
    specs = fn.structured_input_signature[1]
    if INPUT_NAME not in specs:
        raise ZooError(f"SavedModel {saved_model_dir} has no input named {INPUT_NAME!r}")
    return tuple(-1 if d is None else int(d) for d in specs[INPUT_NAME].shape)  # -1: free (dynamic)


def convert(saved_model_dir: str | os.PathLike, out_path: str | os.PathLike, *, precision: str,
            calib: np.ndarray | None = None, int8_io: bool = False, float_modules: Sequence[str] = ()) -> dict:
    """Converts a SavedModel from :func:`save_saved_model` to a ``.tflite`` file.

    ``precision``: ``"fp32"``; ``"fp16"`` (float16 weights, float compute);
    ``"int8"`` (full-integer quantization calibrated on ``calib``, an
    ``(N, H, W, 3)`` float32 array of preprocessed images; ``int8_io=True``
    makes the input/output tensors int8, otherwise they stay float32).
    ``float_modules`` (int8 only): PyTorch module paths of convolutions that stay float
    (float weights and kernel, a dequantize before and a quantize after); every other op is int8.
    Empty: TFLiteConverter's own full-integer conversion, untouched.
    Deterministic (same inputs -> identical bytes), offline.  The file is
    written atomically.  Returns a manifest dict::

        {"precision", "int8_io", "size", "sha256",
         "inputs":  [{"name", "shape", "dtype", "scale", "zero_point"}],
         "outputs": [{"name", "shape", "dtype", "scale", "zero_point"}, ...],
         "float_ops": [output tensor names of the convolutions computing in float]}  # int8 only

    (``scale``/``zero_point`` are 0.0/0 for float tensors, as TFLite stores them.)
    """
    if precision not in PRECISIONS:
        raise ZooError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    if int8_io and precision != "int8":
        raise ZooError("int8_io=True requires precision='int8'")
    float_modules = list(dict.fromkeys(float_modules))
    if float_modules and precision != "int8":
        raise ZooError("float_modules (layers kept float) requires precision='int8'")
    sm = Path(saved_model_dir)
    if not (sm / "saved_model.pb").is_file():
        raise ZooError(f"{sm} is not a SavedModel folder (no saved_model.pb)")
    out = Path(out_path)

    import tensorflow as tf  # heavy: imported when used

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(sm), signature_keys=[SIGNATURE_KEY])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ZooError(f"cannot read SavedModel {sm}: {first}") from None
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if calib is None:
            raise ZooError("int8 conversion needs calibration images (calib)")
        calib = np.asarray(calib)
        shape = _saved_model_input_shape(tf, sm)
        if calib.ndim != 4 or calib.shape[0] < 1 or any(s not in (-1, c) for s, c in zip(shape[1:], calib.shape[1:])):
            raise ZooError(f"calib must have shape (N, {shape[1]}, {shape[2]}, {shape[3]}), got {calib.shape}")
        if not np.all(np.isfinite(calib)):
            raise ZooError("calib contains non-finite values")
        samples = np.ascontiguousarray(calib, dtype=np.float32)

        def representative() -> Any:
            for i in range(samples.shape[0]):
                yield {INPUT_NAME: samples[i:i + 1]}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if float_modules:
            # float kernels for the kept convolutions next to the int8 ones
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        elif int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():
            # int8 calibration goes through TF's own (deprecated) interpreter: not ours to fix.
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            if float_modules:
                data = _selective_int8(tf, converter, float_modules, int8_io)
            else:
                data = converter.convert()
    except ZooError:
        raise
    except Exception as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise ZooError(f"TFLite conversion ({precision}) failed: {lines[-1]}") from None
    kept = float_ops(data) if precision == "int8" else []
    lost = sorted(set(float_modules) - {conv_module(n) for n in kept})
    if lost:
        raise ZooError(f"TFLite int8: the converter quantized {lost[0]!r}, which was to stay float")
    atomic_write_bytes(out, data)
    info = describe(out)
    info.update({"precision": precision, "int8_io": bool(int8_io)})
    if precision == "int8":
        info["float_ops"] = kept
    return info


def _selective_int8(tf: Any, converter: Any, float_modules: list[str], int8_io: bool) -> bytes:
    """Full-integer int8 except the convolutions of ``float_modules``, the way
    ``tf.lite.experimental.QuantizationDebugger`` does selective quantization (its
    ``denylisted_nodes``, then ``get_nondebug_quantized_model``), without building its debug model:
    the converter only calibrates (a float model carrying the activation ranges), and the MLIR
    quantizer then quantizes every op but those whose output tensors are denylisted, with
    int8 or float32 input and output.  A denylisted op reads a DEQUANTIZE and feeds a QUANTIZE."""
    from tensorflow.lite.python.convert import mlir_quantize  # heavy: part of tensorflow

    converter._experimental_calibrate_only = True  # what QuantizationDebugger sets
    calibrated = converter.convert()
    names = _conv_outputs(calibrated)
    unknown = [m for m in float_modules if m not in names]
    if unknown:
        raise ZooError(f"TFLite int8: no convolution {unknown[0]!r} to keep float "
                       f"(the network's are named like {next(iter(names), '?')!r})")
    io_type = tf.int8 if int8_io else tf.float32
    return mlir_quantize(calibrated, input_data_type=io_type, output_data_type=io_type,
                         denylisted_nodes=[names[m] for m in float_modules] + decode_tail(calibrated))


def decode_tail(data: bytes) -> list[str]:
    """Output tensor names of the decoded head's own ops (issue 39): what runs after the last convolution
    and feeds none (reshapes, softmax, the prior arithmetic), when that tail decodes boxes (it holds an
    EXP); empty for a raw head. Left in float, as in ONNX (exporters/onnx/quantize.py, decode_tail)."""
    tensors, ops = _graph(data)
    producer = {o: i for i, op in enumerate(ops) for o in op["outputs"]}
    feeds_conv: set[int] = set()
    todo = [i for i, op in enumerate(ops) if op["op_name"] in _TFLITE_CONVS]
    while todo:
        i = todo.pop()
        if i in feeds_conv:
            continue
        feeds_conv.add(i)
        todo.extend(producer[t] for t in ops[i]["inputs"] if t in producer)
    tail = [op for i, op in enumerate(ops) if i not in feeds_conv]
    if not any(op["op_name"] == "EXP" for op in tail):
        return []
    return [tensors[o]["name"] for op in tail for o in op["outputs"] if o in tensors]


def _graph(data: bytes) -> tuple[dict[int, dict], list[dict]]:
    """(tensor details by index, op details in order) of a ``.tflite`` (its bytes)."""
    from ai_edge_litert.interpreter import Interpreter  # optional runtime: imported when used

    try:
        it = Interpreter(model_content=bytes(data))
    except Exception as exc:
        raise ZooError(f"cannot load the converted model: {exc}") from None
    return {t["index"]: t for t in it.get_tensor_details()}, it._get_ops_details()


def _conv_ops(data: bytes) -> list[tuple[str, dict]]:
    """(output tensor name, weight tensor details) of each convolution of a ``.tflite``, in op order."""
    tensors, ops = _graph(data)
    return [(tensors[op["outputs"][0]]["name"], tensors[op["inputs"][1]])
            for op in ops if op["op_name"] in _TFLITE_CONVS]


def _conv_outputs(data: bytes) -> dict[str, str]:
    """PyTorch module path -> output tensor name of each convolution (see ``network.conv_module``)."""
    out: dict[str, str] = {}
    for name, _ in _conv_ops(data):
        module = conv_module(name)
        if module is not None:
            out.setdefault(module, name)
    return out


def float_ops(data: bytes) -> list[str]:
    """Output tensor names of the convolutions of a ``.tflite`` (its bytes) whose weights are float32."""
    return [name for name, w in _conv_ops(data) if np.dtype(w["dtype"]) == np.float32]


def _tensor_info(name: str, d: dict) -> dict:
    q = d.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), dtype=np.float64)
    zps = np.asarray(q.get("zero_points", []), dtype=np.int64)
    scale, zp = d.get("quantization", (0.0, 0))
    if scales.size > 1 or zps.size > 1:
        raise ZooError(f"tensor {name!r} is quantized per channel; not supported for IO")
    return {"name": name, "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
            "scale": float(scale), "zero_point": int(zp)}


def describe(path: str | os.PathLike) -> dict:
    """Size, sha256 and named IO tensors (shape, dtype, scale, zero point) of a ``.tflite`` file."""
    from ai_edge_litert.interpreter import Interpreter  # optional runtime: imported when used

    p = Path(path)
    data = p.read_bytes()
    try:
        it = Interpreter(model_content=data)
    except Exception as exc:
        raise ZooError(f"cannot load {p}: {exc}") from None
    ins, outs = signature_io(it)
    rank = {"scores": 0, "boxes": 1}
    outs = sorted(outs, key=lambda t: rank.get(t[0], 2))
    return {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "inputs": [_tensor_info(n, d) for n, d in ins],
        "outputs": [_tensor_info(n, d) for n, d in outs],
    }
