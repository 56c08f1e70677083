"""TFLite (LiteRT) target: the network built natively in TensorFlow (NHWC, no transposes) from the
checkpoint, converted with TFLiteConverter; and the SavedModel it passes through as a target of its own.

Why native TF rather than onnx2tf or litert-torch: no pinned old dependencies, no download at
conversion time, ~1 s per conversion after the build, NHWC input with 0 TRANSPOSE ops, and the
model definition stays ours (``network.py`` maps the checkpoint keys).

    network.py      checkpoint -> tf.Module (raw or decoded head)
    saved_model.py  tf.Module -> SavedModel folder, deterministic fingerprint
    convert.py      SavedModel -> .tflite (fp32, fp16, int8 with chosen convolutions kept float), describe
    runner.py       TfliteNet (LiteRT), SavedModelNet (TensorFlow)
"""
from __future__ import annotations

import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from zoo.exporters.base import ExportRequest, ExportResult, Target
from zoo.exporters.tflite.convert import convert
from zoo.exporters.tflite.network import build_module
from zoo.exporters.tflite.runner import SavedModelNet, SavedModelTap, TfliteNet, TfliteTap
from zoo.exporters.tflite.saved_model import canonical_function_names, save_saved_model, stable_fingerprint
from zoo.core.meta import ArtifactMeta
from zoo.core.runtime import NativeRunner, Runner, Tap
from zoo.core.timing import phase


def _module(req: ExportRequest):
    m = req.meta
    sd = req.weights()
    return build_module(sd, m.arch, m.num_classes, m.input_size[0], m.input_size[1], m.head, dynamic=m.is_dynamic)


class TfliteTarget(Target):
    name = "tflite"
    description = "TFLite / LiteRT, NHWC (Android, microcontrollers)"
    suffixes = (".tflite",)
    source = "torch"
    numpy_weights = True
    precisions = ("fp32", "fp16", "int8")
    heads = ("raw", "decoded")
    layout = "NHWC"
    extra = "tflite"
    requires = ("tensorflow", "ai_edge_litert")
    prestart = True  # TensorFlow's import: ~8 s
    packages = ("tensorflow", "tensorflow-cpu", "ai-edge-litert")
    timeout = 600.0
    runtimes = ("litert",)
    telemetry = {"litert": ()}
    dynamic = True  # a (None, None, None, 3) signature; LiteRT resizes it (resize_tensor_input)
    no_min_runtime = ("TensorFlow's TFLiteConverter has no LiteRT-release setting (its target_spec limits op sets and "
                      "types; each operator's version follows what the graph uses)")

    def expand(self, precision: str) -> list[str]:
        # int8 (the sensitivity analysis' convolutions kept float) in two IO flavours: float input/output,
        # and int8 input/output
        return ["int8", "int8-io"] if precision == "int8" else [precision]

    def export(self, req: ExportRequest) -> ExportResult:
        sm_dir = req.out_dir / f".{req.stem}.savedmodel"
        save_saved_model(_module(req), sm_dir)
        calib = None
        base = req.meta.precision.split("-")[0]
        if base == "int8":
            from zoo.core.images import load_batch  # heavy (OpenCV): export only, never the runners

            x, _, _ = load_batch(req.calib, *req.meta.input_size)
            calib = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        rel = Path(req.stem + ".tflite")
        kept = req.float_kept if base == "int8" else []
        with phase("quantization") if base == "int8" else nullcontext():
            info = convert(sm_dir, req.out_dir / rel, precision=base, calib=calib,
                           int8_io=req.meta.precision == "int8-io", float_modules=kept)
        shutil.rmtree(sm_dir, ignore_errors=True)
        io = {"inputs": info["inputs"], "outputs": info["outputs"], "int8_io": info["int8_io"]}
        if base == "int8":
            # the sensitivity analysis' convolutions stay float (their TFLite names: float_ops)
            io["quantization"] = {"float_kept": kept, "float_ops": info["float_ops"], "sensitivity": req.sensitivity}
        meta = req.meta.with_(io=io)
        return ExportResult(primary=rel, files=[rel], meta=meta, tools=self.tool_versions())

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Runner:
        return NativeRunner(meta, lambda: TfliteNet(primary, threads=threads), "litert", threads, layout="NHWC")

    def make_tap(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Tap:
        return TfliteTap(meta, primary, threads=threads)


class SavedModelTarget(Target):
    """The TF SavedModel the TFLite conversion passes through, run in TensorFlow itself."""

    name = "saved_model"
    description = "TensorFlow SavedModel, NHWC (TF Serving, TF.js and other TF converters)"
    suffixes = (".pb",)
    source = "torch"
    numpy_weights = True
    precisions = ("fp32",)
    heads = ("raw", "decoded")
    layout = "NHWC"
    extra = "tflite"
    requires = ("tensorflow",)
    prestart = True  # TensorFlow's import: ~8 s
    packages = ("tensorflow", "tensorflow-cpu")
    timeout = 600.0
    runtimes = ("tensorflow",)
    telemetry = {"tensorflow": ()}
    dynamic = True  # a (None, None, None, 3) serving signature

    def export(self, req: ExportRequest) -> ExportResult:
        folder = req.out_dir / req.stem
        save_saved_model(_module(req), folder)
        canonical_function_names(folder)
        stable_fingerprint(folder)
        files = sorted(p.relative_to(req.out_dir) for p in folder.rglob("*") if p.is_file())
        return ExportResult(primary=Path(req.stem) / "saved_model.pb", files=files, meta=req.meta, tools=self.tool_versions())

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Runner:
        return NativeRunner(meta, lambda: SavedModelNet(Path(primary).parent, threads), "tensorflow", threads, layout="NHWC")

    def make_tap(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Tap:
        return SavedModelTap(meta, primary, threads=threads)
