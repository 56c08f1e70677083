"""ncnn target: our ONNX converted by pnnx; fp32, fp16 (fp16 weights) and int8 written by our own
quantizer in ncnn's int8 format (the ncnn wheel ships no ncnn2table / ncnn2int8)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from zoo.exporters.base import ExportRequest, ExportResult, Target
from zoo.exporters.ncnn.convert import onnx_to_ncnn
from zoo.exporters.ncnn.quantize import quantize_int8
from zoo.exporters.ncnn.runner import NcnnNet, NcnnTap
from zoo.core.errors import ZooError
from zoo.core.timing import phase
from zoo.core.meta import ArtifactMeta
from zoo.core.runtime import NativeRunner, Runner, Tap


class NcnnTarget(Target):
    name = "ncnn"
    description = "ncnn (Tencent; mobile CPUs and Vulkan)"
    suffixes = (".param", ".bin")
    source = "onnx"
    precisions = ("fp32", "fp16", "int8")
    heads = ("raw", "decoded")
    layout = "NCHW"
    extra = "ncnn"
    requires = ("ncnn", "pnnx")
    preload = ("ncnn",)  # pnnx is an executable here: importing its package would load torch
    packages = ("ncnn", "pnnx")
    timeout = 900.0
    dynamic = True  # shape-free by nature once the heads' Reshapes carry -1 (convert.free_reshapes)

    def default_head(self, precision: str) -> str:
        return "raw"

    def head_reason(self, flavour: str, head: str) -> str | None:
        if flavour == "int8" and head != "raw":
            return (f"{self.name} int8 {head}: ncnn int8 quantises the raw-head graph only (the decoded one would "
                    f"quantise the prior arithmetic with the convolutions); use --head raw")
        return None

    def export(self, req: ExportRequest) -> ExportResult:
        m = req.meta
        param, binf = Path(req.stem + ".param"), Path(req.stem + ".bin")
        dyn = tuple(m.input_size) if m.is_dynamic else None
        if m.precision == "int8":
            if m.head != "raw":
                raise ZooError("ncnn int8 quantises the raw-head graph (the decoded one bakes in the priors): use --head raw")
            with tempfile.TemporaryDirectory(dir=req.out_dir) as td:
                info = onnx_to_ncnn(req.onnx_path, td, "fp32", fp16=False, dynamic_size=dyn)
                with phase("quantization"):
                    from zoo.core.images import load_batch  # heavy (OpenCV): export only, never the runners

                    calib, _, _ = load_batch(req.calib, *m.input_size)
                    q = quantize_int8(info["param"], info["bin"], calib, req.out_dir / param, req.out_dir / binf,
                                      input_blob=info["input_blob"])
            quant = {"method": q["method"], "int8_layers": len(q["int8_layers"]),
                     "fp32_layers": len(q["fp32_layers"]), "calibration_images": [p.name for p in req.calib]}
        else:
            info = onnx_to_ncnn(req.onnx_path, req.out_dir, req.stem, fp16=m.precision == "fp16", dynamic_size=dyn)
            quant = None
        io = {"input_blob": info["input_blob"], "output_blobs": info["output_blobs"], "int8": m.precision == "int8",
              "tensors": info["tensors"]}  # blob -> ONNX tensor, for `zoo diff` (pnnx renames every blob)
        if quant:
            io["quantization"] = quant
        return ExportResult(primary=param, files=[param, binf], meta=m.with_(io=io), tools=self.tool_versions())

    runtimes = ("ncnn",)
    telemetry = {"ncnn": ()}

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int,
                    options: dict | None = None) -> Runner:
        io = meta.io or {}
        primary = Path(primary)
        outputs = list((io.get("output_blobs") or {"scores": "out0", "boxes": "out1"}).values())
        return NativeRunner(
            meta,
            lambda: NcnnNet(primary, primary.with_suffix(".bin"), threads=threads, int8=bool(io.get("int8")),
                            input_blob=io.get("input_blob", "in0"), output_blobs=outputs, free_size=meta.is_dynamic,
                            options=options),
            "ncnn", threads,
        )

    #: an app that sets nothing gets ncnn's own defaults: fp16 storage and arithmetic on an ARMv8.2 CPU
    app_options = {"ncnn": ({"defaults": True},)}

    def restoring_options(self, runtime: str, options: dict) -> dict | None:
        """fp16 off: measured on rfb-320 fp32 under ARMv8.2, `use_fp16_arithmetic = false` alone still
        stores in fp16 (1.3e-3 from x86); with storage and packing off too the scores equal x86's."""
        return {**options, "use_fp16_packed": False, "use_fp16_storage": False, "use_fp16_arithmetic": False}

    def make_tap(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Tap:
        return NcnnTap(meta, Path(primary), threads=threads)
