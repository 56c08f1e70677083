"""TFLite (LiteRT) target: the network built natively in TensorFlow (NHWC, no transposes) from the
checkpoint, converted with TFLiteConverter; and the SavedModel it passes through as a target of its own.

Why native TF rather than onnx2tf or litert-torch: no pinned old dependencies, no download at
conversion time, ~1 s per conversion after the build, NHWC input with 0 TRANSPOSE ops, and the
model definition stays ours (``network.py`` maps the checkpoint keys).

    network.py      checkpoint -> tf.Module (raw or decoded head)
    saved_model.py  tf.Module -> SavedModel folder, deterministic fingerprint
    convert.py      SavedModel -> .tflite (fp32, fp16, int8 with chosen convolutions kept float), describe
    runner.py       TfliteNet (LiteRT), SavedModelNet (TensorFlow)
    graph_model.py  tf.Module -> TF.js graph model (model.json + one weight shard), written by us; reading one back
    tfjs_runtime.mjs  the TF.js runtimes (wasm, cpu backends) in the Node worker (zoo.core.node)
"""
from __future__ import annotations

import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from zoo.exporters.base import ExportRequest, ExportResult, Target
from zoo.exporters.tflite import graph_model as gm
from zoo.exporters.tflite.convert import convert
from zoo.exporters.tflite.network import build_module
from zoo.exporters.tflite.runner import SavedModelNet, SavedModelTap, TfliteNet, TfliteTap
from zoo.exporters.tflite.saved_model import canonical_function_names, save_saved_model, stable_fingerprint
from zoo.core.meta import ArtifactMeta
from zoo.core.node import WEB_INSTALL, NodeRunner, package_versions, web_runtime_problem
from zoo.core.runtime import NativeRunner, Runner, Tap
from zoo.core.fsutil import atomic_write_bytes
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


#: the npm packages of each TF.js runtime (pinned by package-lock.json, installed by scripts/install.sh)
TFJS_PACKAGES = {
    "tfjs-wasm": ("@tensorflow/tfjs-core", "@tensorflow/tfjs-converter", "@tensorflow/tfjs-backend-cpu",
                  "@tensorflow/tfjs-backend-wasm"),
    "tfjs-cpu": ("@tensorflow/tfjs-core", "@tensorflow/tfjs-converter", "@tensorflow/tfjs-backend-cpu"),
}
TFJS_BACKEND = Path(__file__).with_name("tfjs_runtime.mjs")
#: what each flavour stores; all of them compute in float32 (TF.js decodes the weights on load)
TFJS_STORAGE = {
    "fp32": "float32 weights",
    "fp16": "float16 weights (every float constant), decoded to float32 on load: float compute",
    "uint8-weight": ("uint8 convolution kernels, one range per output channel (value = (q * scale + min) times a "
                     "float32 per-channel scale, a Mul in the graph), decoded to float32 on load: float compute, "
                     "not integer; biases, priors, the score head and the layers the int8 sensitivity analysis "
                     "keeps float stay float32"),
}


class TfjsTarget(Target):
    """A TF.js graph model of the NHWC network (the one the SavedModel holds), run by TF.js in Node."""

    name = "tfjs"
    description = "TF.js graph model, NHWC (web pages: tfjs-wasm, tfjs-cpu; see web/ultraface.js)"
    suffixes = (".model.json", ".bin")
    source = "torch"
    numpy_weights = True
    precisions = ("fp32", "fp16", "int8")
    heads = ("decoded", "raw")  # decoded: the web default (no priors to make in the page)
    layout = "NHWC"
    extra = "tflite"
    requires = ("tensorflow",)
    prestart = True  # TensorFlow's import: ~8 s
    packages = ("tensorflow", "tensorflow-cpu")
    timeout = 600.0
    runtimes = ("tfjs-wasm", "tfjs-cpu")
    slow_runtimes = ("tfjs-cpu",)  # pure JavaScript: ~1-3 s per image
    #: TF.js reports no usage (the Node audit of tests/targets/test_no_network.py sees no look-up or connection)
    telemetry = {"tfjs-wasm": (), "tfjs-cpu": ()}
    web_heads = ("decoded", "raw")
    # the network is saved_model's and tflite's (network.py, proven at every size by them); the graph-model
    # writer only renames, fuses and moves constants, whatever their shapes
    one_size_per_arch = True
    dynamic = False
    dynamic_reason = ("the web module (web/ultraface.js) runs one input size; for free sizes on the web, run a dynamic "
                      "ONNX (--to onnx --dynamic) in ort-web")
    no_min_runtime = "the graph model uses ops TF.js has had since 3.x; no converter option changes that"

    def expand(self, precision: str) -> list[str]:
        # int8: TF.js has no integer compute; its uint8 weight storage, named for what it is
        return ["uint8-weight"] if precision == "int8" else [precision]

    def runtime_problem(self, runtime: str) -> str | None:
        return web_runtime_problem(TFJS_PACKAGES[runtime]) if runtime in TFJS_PACKAGES else None

    def runtime_hint(self, runtime: str) -> str:
        return WEB_INSTALL

    def tool_versions(self) -> dict[str, str]:
        return {**super().tool_versions(), **package_versions(TFJS_PACKAGES["tfjs-wasm"])}

    def export(self, req: ExportRequest) -> ExportResult:
        m = req.meta
        rel, shard = Path(req.stem + ".model.json"), Path(req.stem + ".bin")
        sm_dir = req.out_dir / f".{req.stem}.savedmodel"
        save_saved_model(_module(req), sm_dir)
        with phase("quantization") if m.precision != "fp32" else nullcontext():
            kept = req.float_kept if m.precision == "uint8-weight" else []
            doc, data, info = gm.graph_model(sm_dir, m.precision, shard.name, kept)
        shutil.rmtree(sm_dir, ignore_errors=True)
        io = {"format": info["format"], "weights": TFJS_STORAGE[m.precision], "compute": "float32",
              "weight_values": info["weights"], "fused_convolutions": info["fused_convolutions"]}
        if m.precision == "uint8-weight":
            # what is stored as uint8 (one range per output channel), and what stays float32: the modules of
            # the shared int8 sensitivity analysis and the score head's own kernels
            io["quantization"] = {"float_kept": kept, "score_head_float": info["score_head_float"],
                                  "uint8_kernels": len(info["uint8_kernels"]), "sensitivity": req.sensitivity}
        meta = m.with_(io=io)
        doc["userDefinedMetadata"] = {gm.META_KEY: meta.to_dict()}
        atomic_write_bytes(req.out_dir / shard, data)
        atomic_write_bytes(req.out_dir / rel, gm.dump(doc))
        return ExportResult(primary=rel, files=[rel, shard], meta=meta, tools=self.tool_versions())

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Runner:
        backend = runtime.split("-", 1)[1]  # wasm, cpu
        return NodeRunner(meta, runtime, TFJS_BACKEND, lambda: list(gm.read_graph_model(primary)),
                          {"backend": backend}, threads=threads, layout="NHWC", packages=TFJS_PACKAGES[runtime])
