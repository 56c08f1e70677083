"""MNN target: our ONNX converted by MNN's native converter (never its CLI wrappers, which run pip
and post usage logs), fp32 / fp16 / int8 (full, ADMM-calibrated) / int8-weight (weights only).

Modules: ``native`` (the compiled extensions and their captured log), ``convert`` (ONNX -> MNN,
bizCode metadata, reproducible files), ``quantize`` (full int8 calibration), ``runner`` (``MnnNet``)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from exporters.base import ExportRequest, ExportResult, Target
from exporters.mnn.convert import make_reproducible, onnx_to_mnn
from exporters.mnn.quantize import pick_calibration, quantize_mnn
from exporters.mnn.runner import MnnNet
from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta
from zoo.core.runtime import NativeRunner, Runner


class MnnTarget(Target):
    name = "mnn"
    description = "MNN (Alibaba; mobile and embedded CPUs)"
    suffixes = (".mnn",)
    source = "onnx"
    precisions = ("fp32", "fp16", "int8")
    heads = ("raw", "decoded")
    layout = "NCHW"
    extra = "mnn"
    requires = ("MNN",)
    packages = ("MNN",)
    timeout = 900.0
    runtimes = ("mnn",)

    def expand(self, precision: str) -> list[str]:
        # int8: full quantisation (weights and activations), and weight-only int8 (float compute)
        return ["int8", "int8-weight"] if precision == "int8" else [precision]

    def export(self, req: ExportRequest) -> ExportResult:
        m = req.meta
        if m.precision == "int8" and m.head != "raw":
            raise ZooError("MNN full int8 quantises the raw-head graph (the decoded one bakes in the priors): use --head raw")
        rel = Path(req.stem + ".mnn")
        biz = m.to_json()
        if m.precision == "int8":
            with tempfile.TemporaryDirectory(dir=req.out_dir) as td:
                fp32 = Path(td) / "fp32.mnn"
                onnx_to_mnn(req.onnx_path, fp32, biz_code=biz)
                calib = pick_calibration(req.calib)
                quantize_mnn(fp32, req.out_dir / rel, calib_images=[str(p) for p in calib],
                             width=m.input_size[0], height=m.input_size[1], method="ADMM", weight_method="MAX_ABS")
            meta = m.with_(io={"calibration": {"method": "ADMM", "weights": "MAX_ABS", "images": [p.name for p in calib]}})
        else:
            onnx_to_mnn(req.onnx_path, req.out_dir / rel, fp16=m.precision == "fp16",
                        weight_int8=m.precision == "int8-weight", biz_code=biz)
            meta = m
        make_reproducible(req.out_dir / rel)
        return ExportResult(primary=rel, files=[rel], meta=meta, tools=self.tool_versions())

    def default_head(self, precision: str) -> str:
        return "raw"

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Runner:
        return NativeRunner(meta, lambda: MnnNet(primary, threads=threads), "mnn", threads)
