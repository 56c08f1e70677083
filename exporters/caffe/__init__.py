"""Caffe-style target: .prototxt + .caffemodel written by our own writer, run in OpenCV DNN (< 5)."""
from __future__ import annotations

from pathlib import Path

from zoo.exporters.base import ExportRequest, ExportResult, Target
from zoo.exporters.caffe.runner import CaffeNet, CaffeTap
from zoo.exporters.caffe.writer import onnx_to_caffe
from zoo.core.meta import ArtifactMeta
from zoo.core.runtime import NativeRunner, Runner, Tap


class CaffeTarget(Target):
    name = "caffe"
    description = "Caffe .prototxt + .caffemodel (OpenCV DNN < 5, vendor NPU tools)"
    suffixes = (".prototxt", ".caffemodel")
    source = "onnx"
    precisions = ("fp32",)
    heads = ("raw", "decoded")
    layout = "NCHW"
    extra = "caffe"
    requires = ("cv2", "onnx", "google.protobuf")
    packages = ("opencv-python-headless", "opencv-python", "protobuf", "onnx")
    timeout = 120.0
    dynamic_reason = "the prototxt fixes the input dims and each head's Reshape dims (Caffe has no free shapes)"

    def source_head(self, head: str) -> str:
        return "raw"  # the decoded head is appended as Caffe layers to the raw graph

    def missing(self) -> list[str]:
        miss = super().missing()
        if not miss:
            import cv2  # optional runtime: imported when used

            if int(cv2.__version__.split(".")[0]) >= 5 or not hasattr(cv2.dnn, "readNetFromCaffe"):
                miss.append(f"opencv-python-headless<5 (found OpenCV {cv2.__version__}, which has no Caffe importer)")
        return miss

    def export(self, req: ExportRequest) -> ExportResult:
        proto, model = Path(req.stem + ".prototxt"), Path(req.stem + ".caffemodel")
        onnx_to_caffe(req.onnx_path, req.out_dir / proto, req.out_dir / model, name=req.meta.model_id, head=req.meta.head)
        return ExportResult(primary=proto, files=[proto, model], meta=req.meta, tools=self.tool_versions())

    runtimes = ("opencv-caffe",)
    telemetry = {"opencv-caffe": ()}

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Runner:
        return NativeRunner(meta, lambda: CaffeNet(primary, primary.with_suffix(".caffemodel"), threads=threads), "opencv-caffe", threads)

    def make_tap(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Tap:
        return CaffeTap(meta, primary, threads=threads)
