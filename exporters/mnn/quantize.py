"""Full int8 quantization (weights and activations) with MNN's native calibration.

Facts about MNN 3.6.1 this module depends on (measured, not guessed):

* ADMM calibration writes every image as NC4HW4 into a buffer sized for the
  model's input layout: with an NCHW input (the MNN 3.x default,
  ``--keepInputFormat`` true) the last image overflows the heap and the
  process aborts/segfaults.  ``onnx_to_mnn`` therefore converts to an NC4HW4
  input, and ``quantize_mnn`` refuses ADMM on an NCHW-input model.
* The quantizer also writes ``<dst>.json`` (tensor scales); it is dropped.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from zoo.exporters.mnn.native import existing_file, import_tools, load_info, model_inputs, native_output, output_file, tail
from zoo.exporters.mnn.runner import MnnNet
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_path
from zoo.core.model.layers import onnx_module_name

#: images ADMM calibrates on (its time and memory grow with the count)
MAX_CALIB = 4
#: from this many input pixels on (640x480), ADMM calibrates on the face-rich images, below it on
#: images spread over the set (zoo.exporters.mnn.MnnTarget._int8 has the measurements)
FACE_RICH_PIXELS = 640 * 480
#: the architectures EMA calibration is tried on (it lost almost every face of both RFB checkpoints)
EMA_ARCHES = ("slim",)
#: feature_quantize_method values accepted by MNN's calibration.
FEATURE_METHODS = ("ADMM", "KL", "EMA")
#: weight_quantize_method values accepted by MNN's calibration.
WEIGHT_METHODS = ("MAX_ABS", "ADMM")

# Preprocessing of the UltraFace family: RGB, (pixel - 127) / 128.
_MEAN = 127.0
_NORM = 1.0 / 128.0


def spread(paths: list[Path], k: int = MAX_CALIB) -> list[Path]:
    """k images spread evenly over the (sorted) set: deterministic, independent of the set's size."""
    paths = sorted(paths)
    if len(paths) <= k:
        return paths
    return [paths[round(i * (len(paths) - 1) / (k - 1))] for i in range(k)]


def _write_calibration_images(images: Sequence[str | os.PathLike], width: int, height: int, folder: Path) -> int:
    """Decode with OpenCV, resize the whole image to W x H (as the host does)
    and store lossless PNGs, so MNN's own loader/resizer sees exactly the
    pixels our preprocessing produces (its resize becomes an identity)."""
    import cv2  # heavy: only calibration needs it

    bad: list[str] = []
    for i, img_path in enumerate(images):
        p = Path(img_path)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR) if p.is_file() else None
        if img is None or img.size == 0:
            bad.append(str(p))
            continue
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
        if not cv2.imwrite(str(folder / f"calib_{i:05d}.png"), img):
            raise ZooError(f"cannot write calibration image into {folder}")
    if bad:
        shown = ", ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        raise ZooError(f"{len(bad)} calibration image(s) missing or unreadable: {shown}")
    return len(images)


def quantize_mnn(
    fp32_mnn_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    calib_images: list[str],
    width: int,
    height: int,
    method: str = "ADMM",
    weight_method: str = "MAX_ABS",
    skip_ops: list[str] = (),
) -> None:
    """Full int8 quantization (weights and activations) with MNN's native
    calibration.

    Calibration images are decoded on the host (OpenCV), resized to
    ``width`` x ``height`` and fed as RGB with mean 127 and scale 1/128 -- the
    UltraFace preprocessing.  ``method`` is the feature (activation) method
    (ADMM, KL or EMA), ``weight_method`` MAX_ABS or ADMM; ``skip_ops`` names convolution ops
    to keep float (MNN names a convolution converted from ONNX by the Conv node's first output).  ADMM needs the
    fp32 model's input in NC4HW4 layout (what ``onnx_to_mnn`` writes) and
    keeps all calibration images in memory as one batch; its run time grows
    about linearly with the number of images (~10 s per 320x240 image, ~45 s
    per 640x480 image on one core here).  KL is fast but wrecked slim-320
    (see the report); ADMM on 2-4 images is the measured choice.  The bizCode
    of the fp32 model is kept.  Pure (inputs -> file), can run in a
    subprocess; written atomically after a probe inference.  Raises ZooError
    on bad input or failure.
    """
    src = existing_file(fp32_mnn_path, "fp32 MNN model")
    out = output_file(out_path)
    if method not in FEATURE_METHODS:
        raise ZooError(f"unknown feature quantization method {method!r}; choose one of {FEATURE_METHODS}")
    if weight_method not in WEIGHT_METHODS:
        raise ZooError(f"unknown weight quantization method {weight_method!r}; choose one of {WEIGHT_METHODS}")
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ZooError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(calib_images, (str, bytes, os.PathLike)):
        raise ZooError("calib_images must be a list of image paths, not a single path")
    images = list(calib_images or [])
    if not images:
        raise ZooError("no calibration images given")

    (fmt, dims), *_ = model_inputs(src)
    if method == "ADMM" and fmt != "NC4HW4":
        raise ZooError(
            f"ADMM calibration needs an NC4HW4-input model (MNN 3.6.1 corrupts memory otherwise); "
            f"{src.name} has a {fmt} input. Convert it with onnx_to_mnn, or use method='KL'."
        )
    if len(dims) == 4 and all(d > 0 for d in dims[2:]) and dims[2:] != [height, width]:
        raise ZooError(f"{src.name} expects {dims[3]}x{dims[2]} input but calibration asked for {width}x{height}")

    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".quant", dir=out.parent) as work, \
            atomic_path(out, "mnn") as tmp:
        img_dir = Path(work) / "images"
        img_dir.mkdir()
        n = _write_calibration_images(images, int(width), int(height), img_dir)
        config = {
            "format": "RGB",
            "mean": [_MEAN, _MEAN, _MEAN],
            "normal": [_NORM, _NORM, _NORM],
            "width": int(width),
            "height": int(height),
            "path": str(img_dir) + os.sep,
            "used_image_num": n,
            "feature_quantize_method": method,
            "weight_quantize_method": weight_method,
            "skip_quant_op_names": list(skip_ops),
        }
        cfg_path = Path(work) / "quant.json"
        cfg_path.write_text(json.dumps(config), encoding="utf-8")
        scales = Path(f"{tmp}.json")  # the quantizer's tensor scales: dropped
        try:
            with native_output() as log:
                ok = import_tools().mnnquant(["mnnquant", str(src), str(tmp), str(cfg_path)])
        finally:
            scales.unlink(missing_ok=True)
        if not ok or not tmp.is_file() or tmp.stat().st_size == 0:
            raise ZooError(f"MNN quantization of {src.name} failed -- MNN: {tail(log[0])}")
        if tmp.stat().st_size >= 0.75 * src.stat().st_size:
            raise ZooError(
                f"MNN quantization of {src.name} produced no int8 weights "
                f"({tmp.stat().st_size} vs {src.stat().st_size} bytes) -- MNN: {tail(log[0])}"
            )
        load_info(tmp)
        with MnnNet(tmp):  # one probe inference: never publish a file MNN cannot run
            pass


def skip_ops_for(onnx_path, modules) -> list[str]:
    """MNN op names of the convolutions exported from the PyTorch ``modules`` (MNN names an op
    converted from ONNX by its node's first output)."""
    import onnx  # heavy

    wanted = set(modules)
    model = onnx.load(str(onnx_path), load_external_data=False)
    return [n.output[0] for n in model.graph.node if n.op_type == "Conv" and onnx_module_name(n.name) in wanted]


def _quantize_job(job: dict) -> dict:
    """One candidate of `MnnTarget._int8`, in a process of its own (zoo.core.isolation): MNN's
    quantizer crashed (SIGSEGV) when a second method ran in the process of the first."""
    quantize_mnn(job["src"], job["dst"], calib_images=job["images"], width=job["width"], height=job["height"],
                 method=job["method"], weight_method=job["weight_method"], skip_ops=job["skip_ops"])
    return {"ok": True}


if __name__ == "__main__":
    import sys

    from zoo.core.isolation import worker_main

    sys.exit(worker_main(sys.argv[1:], _quantize_job))
