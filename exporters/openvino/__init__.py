"""OpenVINO target: our ONNX converted with ``openvino.convert_model`` and written with
``openvino.save_model`` as an IR (.xml + .bin): fp32, fp16 (weights compressed to fp16) and int8
(NNCF post-training quantization; the setting measured best on held-out calibration images; the
layers kept float store their convolution weights as f16). Every IR is written compacted (the same
graph in fewer bytes), so the int8 IR fits in 45% of the fp32 one.

Modules: ``quiet`` (openvino and nncf imported with their usage reporting turned off),
``convert`` (ONNX -> IR, metadata in rt_info, the compaction), ``quantize`` (NNCF int8), ``runner``
(``OpenvinoRunner``: ``Core().compile_model(model, "CPU")``; ``OpenvinoTap`` for `zoo diff`)."""
from __future__ import annotations

from pathlib import Path

from zoo.exporters.base import ExportRequest, ExportResult, Target
from zoo.exporters.openvino.convert import F16_MIN_VALUES, embed_metadata, onnx_to_ov, save_ir
from zoo.exporters.openvino.runner import OpenvinoRunner, OpenvinoTap
from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta
from zoo.core.runtime import Runner, Tap


class OpenvinoTarget(Target):
    name = "openvino"
    description = "OpenVINO IR .xml + .bin (Intel CPUs, GPUs, NPUs)"
    suffixes = (".xml", ".bin")
    source = "onnx"
    #: int8 (NNCF, `_int8`): every IR is written compacted (`convert.compact`: equal constants merged,
    #: constant-only operations renamed, no whitespace between tags) and the int8 one stores its float-kept
    #: convolution weights as f16; measured with the default calibration, the int8 IR is 42-44% of the
    #: fp32 IR over the four models (rfb-320 44.0%), within the 45% bound every int8 artifact meets
    #: (tests/targets/test_targets.py). Before: 49-53%. See README
    precisions = ("fp32", "fp16", "int8")
    heads = ("raw", "decoded")
    dynamic = True  # convert_model keeps the dynamic ONNX's free axes; the CPU plugin runs any shape
    layout = "NCHW"
    extra = "openvino"
    requires = ("openvino", "nncf")
    #: imported up front by the worker: openvino with its telemetry off (importing "openvino" by name
    #: would bring openvino-telemetry in live first, and the export would then refuse to run)
    preload = ("zoo.exporters.openvino.preload",)
    #: openvino.convert_model names some nodes from process-wide counters ("Reshape_15" in a fresh
    #: process, "Reshape_4959" after one conversion): a warm process would write other bytes
    warm = False
    packages = ("openvino", "nncf")
    timeout = 900.0
    runtimes = ("openvino",)
    telemetry = {"openvino": ("openvino-telemetry",)}  # off: zoo.exporters.openvino.quiet

    def default_head(self, precision: str) -> str:
        return "raw"

    def head_reason(self, flavour: str, head: str) -> str | None:
        if flavour == "int8" and head != "raw":
            return (f"{self.name} int8 {head}: OpenVINO int8 quantises the raw-head graph only (the decoded one would "
                    f"quantise the prior arithmetic with the convolutions); use --head raw")
        return None

    def export(self, req: ExportRequest) -> ExportResult:
        m = req.meta
        if m.precision == "int8" and m.head != "raw":
            raise ZooError("OpenVINO int8 quantises the raw-head graph (the decoded one bakes in the priors): use --head raw")
        model = onnx_to_ov(req.onnx_path)
        meta = m
        if m.precision == "int8":
            model, meta = self._int8(req, model)
        embed_metadata(model, meta)
        xml, bin_ = save_ir(model, req.out_dir, req.stem, fp16=m.precision == "fp16",
                            f16_float_weights=m.precision == "int8")
        return ExportResult(primary=xml, files=[xml, bin_], meta=meta, tools=self.tool_versions())

    def _int8(self, req: ExportRequest, model):
        """NNCF int8 with the measured setting (quantize.SETTING) on every calibration image; the
        softmax, the input convolutions and the sensitivity analysis' layers stay float."""
        from zoo.exporters.openvino.quantize import SETTING, SETTINGS, float_nodes, quantized_ops, to_int8  # heavy (sensitivity: torch)
        from zoo.core.images import load_batch  # heavy (OpenCV)

        m = req.meta
        ignored = float_nodes(model, req.float_kept)
        x_all, _, _ = load_batch(sorted(req.calib), *m.input_size)
        q = to_int8(model, x_all, ignored, SETTING)
        preset, estimator = SETTINGS[SETTING]
        meta = m.with_(io={
            "calibration": {"method": SETTING, "preset": preset.lower(), "activation_ranges": estimator or "nncf default",
                            "subset_size": len(req.calib), "fast_bias_correction": True,
                            "images": [p.name for p in sorted(req.calib)]},
            "quantization": {"format": "NNCF FakeQuantize, int8 weights",
                             "float_weights": f"f16 (Convert to f32) when >= {F16_MIN_VALUES} values, else f32",
                             "float_kept": req.float_kept,
                             "float_nodes": ignored, "ops": quantized_ops(q), "sensitivity": req.sensitivity}})
        return q, meta

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Runner:
        return OpenvinoRunner(meta, primary, threads=threads)

    def make_tap(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Tap:
        return OpenvinoTap(meta, primary, threads=threads)
