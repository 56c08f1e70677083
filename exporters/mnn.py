"""MNN target: our ONNX converted by MNN's native converter (never its CLI wrappers, which run pip
and post usage logs), fp32 / fp16 / int8 (full, ADMM-calibrated) / int8-weight (weights only)."""
from __future__ import annotations

import hashlib
import re
import tempfile
import uuid
from pathlib import Path

from exporters.base import ExportRequest, ExportResult, Target
from zoo.errors import ZooError
from zoo.meta import ArtifactMeta

#: calibration images used at most (ADMM time and memory grow with the count; spread over the set)
MAX_CALIB = 4


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def make_reproducible(path: Path) -> None:
    """MNN writes a random UUID into every model; replace it by one derived from the content,
    so the same inputs give byte-identical files (same length: the flatbuffer stays valid)."""
    from zoo.fsutil import atomic_write_bytes

    data = Path(path).read_bytes()
    found = _UUID.findall(data[:4096])
    if not found:
        return
    blank = _UUID.sub(b"0" * 8 + b"-0000-0000-0000-" + b"0" * 12, data, count=len(found))
    stable = str(uuid.uuid5(uuid.NAMESPACE_OID, hashlib.sha256(blank).hexdigest())).encode()
    atomic_write_bytes(path, _UUID.sub(stable, data, count=len(found)))


def pick_calibration(paths: list[Path], k: int = MAX_CALIB) -> list[Path]:
    """k images spread evenly over the (sorted) set: deterministic, independent of the set's size."""
    paths = sorted(paths)
    if len(paths) <= k:
        return paths
    return [paths[round(i * (len(paths) - 1) / (k - 1))] for i in range(k)]


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

    def expand(self, precision: str) -> list[str]:
        # int8: full quantisation (weights and activations), and weight-only int8 (float compute)
        return ["int8", "int8-weight"] if precision == "int8" else [precision]

    def export(self, req: ExportRequest) -> ExportResult:
        from exporters._mnn_tools import onnx_to_mnn, quantize_mnn

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

    def runner(self, primary: Path, meta: ArtifactMeta, threads: int = 1, runtime: str | None = None):
        from exporters._mnn_tools import MnnNet
        from validation.runners import NativeRunner

        return NativeRunner(meta, lambda: MnnNet(primary, threads=threads), "mnn", threads)
