"""TFLite (LiteRT) target: the network built natively in TensorFlow (NHWC, no transposes) from the
checkpoint, converted with TFLiteConverter; and the SavedModel it passes through as a target of its own.

Why native TF rather than onnx2tf or litert-torch: no pinned old dependencies, no download at
conversion time, ~1 s per conversion after the build, NHWC input with 0 TRANSPOSE ops, and the
model definition stays ours (exporters/_tflite_build.py maps the checkpoint keys).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from exporters.base import ExportRequest, ExportResult, Target
from zoo.meta import ArtifactMeta


def _module(req: ExportRequest):
    from exporters._tflite_build import build_module

    m = req.meta
    sd = {k: v.detach().cpu().numpy() for k, v in req.state_dict.items()}
    return build_module(sd, m.arch, m.num_classes, m.input_size[0], m.input_size[1], m.head)


class TfliteTarget(Target):
    name = "tflite"
    description = "TFLite / LiteRT, NHWC (Android, microcontrollers)"
    suffixes = (".tflite",)
    source = "torch"
    precisions = ("fp32", "fp16", "int8")
    heads = ("raw", "decoded")
    layout = "NHWC"
    extra = "tflite"
    requires = ("tensorflow", "ai_edge_litert")
    packages = ("tensorflow", "tensorflow-cpu", "ai-edge-litert")
    timeout = 600.0

    def expand(self, precision: str) -> list[str]:
        # full-integer int8 in two IO flavours: float input/output, and int8 input/output
        return ["int8", "int8-io"] if precision == "int8" else [precision]

    def export(self, req: ExportRequest) -> ExportResult:
        from exporters._tflite_build import convert, save_saved_model

        sm_dir = req.out_dir / f".{req.stem}.savedmodel"
        save_saved_model(_module(req), sm_dir)
        calib = None
        base = req.meta.precision.split("-")[0]
        if base == "int8":
            from zoo.images import load_batch

            x, _, _ = load_batch(req.calib, *req.meta.input_size)
            calib = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        rel = Path(req.stem + ".tflite")
        info = convert(sm_dir, req.out_dir / rel, precision=base, calib=calib, int8_io=req.meta.precision == "int8-io")
        shutil.rmtree(sm_dir, ignore_errors=True)
        io = {"inputs": info["inputs"], "outputs": info["outputs"], "int8_io": info["int8_io"]}
        meta = req.meta.with_(io=io)
        return ExportResult(primary=rel, files=[rel], meta=meta, tools=self.tool_versions())

    def runner(self, primary: Path, meta: ArtifactMeta, threads: int = 1, runtime: str | None = None):
        from exporters._tflite_build import TfliteNet
        from validation.runners import NativeRunner

        return NativeRunner(meta, lambda: TfliteNet(primary, threads=threads), "litert", threads, layout="NHWC")


class SavedModelTarget(Target):
    """The TF SavedModel the TFLite conversion passes through, run in TensorFlow itself."""

    name = "saved_model"
    description = "TensorFlow SavedModel, NHWC (TF Serving, TF.js and other TF converters)"
    suffixes = (".pb",)
    source = "torch"
    precisions = ("fp32",)
    heads = ("raw", "decoded")
    layout = "NHWC"
    extra = "tflite"
    requires = ("tensorflow",)
    packages = ("tensorflow", "tensorflow-cpu")
    timeout = 600.0

    def export(self, req: ExportRequest) -> ExportResult:
        from exporters._tflite_build import save_saved_model

        folder = req.out_dir / req.stem
        save_saved_model(_module(req), folder)
        _stable_fingerprint(folder)
        files = sorted(p.relative_to(req.out_dir) for p in folder.rglob("*") if p.is_file())
        return ExportResult(primary=Path(req.stem) / "saved_model.pb", files=files, meta=req.meta, tools=self.tool_versions())

    def runner(self, primary: Path, meta: ArtifactMeta, threads: int = 1, runtime: str | None = None):
        from validation.runners import NativeRunner

        return NativeRunner(meta, lambda: SavedModelNet(Path(primary).parent, threads), "tensorflow", threads, layout="NHWC")


def _stable_fingerprint(folder: Path) -> None:
    """TF writes a random uuid into fingerprint.pb; derive it from the content hashes instead,
    so the same inputs give byte-identical SavedModels."""
    from tensorflow.core.protobuf import fingerprint_pb2

    from zoo.fsutil import atomic_write_bytes

    path = folder / "fingerprint.pb"
    if not path.is_file():
        return
    fp = fingerprint_pb2.FingerprintDef()
    fp.ParseFromString(path.read_bytes())
    if "uuid" in fp.DESCRIPTOR.fields_by_name:
        fp.uuid = str(fp.saved_model_checksum)
    atomic_write_bytes(path, fp.SerializeToString(deterministic=True))


class SavedModelNet:
    def __init__(self, folder: Path, threads: int = 1):
        self.folder, self.threads = folder, threads

    def __enter__(self):
        import tensorflow as tf

        from zoo.errors import ZooError

        try:
            tf.config.threading.set_intra_op_parallelism_threads(self.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # already initialised in this process
        try:
            self.fn = tf.saved_model.load(str(self.folder)).signatures["serving_default"]
        except Exception as e:  # noqa: BLE001 - TF raises many types
            raise ZooError(f"TensorFlow cannot load the SavedModel {self.folder}: {str(e).splitlines()[0][:200]}") from None
        return self

    def __exit__(self, *exc):
        self.fn = None

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf

        outs = [self.fn(input=tf.constant(x[i : i + 1])) for i in range(x.shape[0])]
        return {k: np.concatenate([o[k].numpy() for o in outs], 0) for k in outs[0]}
