"""SavedModel -> ``.tflite`` with TFLiteConverter (fp32, fp16 weights, int8), and what a ``.tflite`` holds."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from exporters.tflite.network import INPUT_NAME, SIGNATURE_KEY
from exporters.tflite.runner import signature_io
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes
from zoo.core.manifest import PRECISIONS


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
    return tuple(int(d) for d in specs[INPUT_NAME].shape)


def convert(saved_model_dir: str | os.PathLike, out_path: str | os.PathLike, *, precision: str,
            calib: np.ndarray | None = None, int8_io: bool = False) -> dict:
    """Converts a SavedModel from :func:`save_saved_model` to a ``.tflite`` file.

    ``precision``: ``"fp32"``; ``"fp16"`` (float16 weights, float compute);
    ``"int8"`` (full-integer quantization calibrated on ``calib``, an
    ``(N, H, W, 3)`` float32 array of preprocessed images; ``int8_io=True``
    makes the input/output tensors int8, otherwise they stay float32).
    Deterministic (same inputs -> identical bytes), offline.  The file is
    written atomically.  Returns a manifest dict::

        {"precision", "int8_io", "size", "sha256",
         "inputs":  [{"name", "shape", "dtype", "scale", "zero_point"}],
         "outputs": [{"name", "shape", "dtype", "scale", "zero_point"}, ...]}

    (``scale``/``zero_point`` are 0.0/0 for float tensors, as TFLite stores them.)
    """
    if precision not in PRECISIONS:
        raise ZooError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    if int8_io and precision != "int8":
        raise ZooError("int8_io=True requires precision='int8'")
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
        if calib.ndim != 4 or calib.shape[0] < 1 or tuple(calib.shape[1:]) != shape[1:]:
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
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():
            # int8 calibration goes through TF's own (deprecated) interpreter: not ours to fix.
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            data = converter.convert()
    except Exception as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise ZooError(f"TFLite conversion ({precision}) failed: {lines[-1]}") from None
    atomic_write_bytes(out, data)
    info = describe(out)
    info.update({"precision": precision, "int8_io": bool(int8_io)})
    return info


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
