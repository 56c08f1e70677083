"""Caffe-style target: .prototxt + .caffemodel written by our own writer, run in OpenCV DNN (< 5)."""
from __future__ import annotations

from pathlib import Path

from exporters.base import ExportRequest, ExportResult, Target
from zoo.meta import ArtifactMeta


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

    def source_head(self, head: str) -> str:
        return "raw"  # the decoded head is appended as Caffe layers to the raw graph

    def missing(self) -> list[str]:
        miss = super().missing()
        if not miss:
            import cv2

            if int(cv2.__version__.split(".")[0]) >= 5 or not hasattr(cv2.dnn, "readNetFromCaffe"):
                miss.append(f"opencv-python-headless<5 (found OpenCV {cv2.__version__}, which has no Caffe importer)")
        return miss

    def export(self, req: ExportRequest) -> ExportResult:
        from exporters._caffe import onnx_to_caffe

        proto, model = Path(req.stem + ".prototxt"), Path(req.stem + ".caffemodel")
        onnx_to_caffe(req.onnx_path, req.out_dir / proto, req.out_dir / model, name=req.meta.model_id, head=req.meta.head)
        return ExportResult(primary=proto, files=[proto, model], meta=req.meta, tools=self.tool_versions())

    def runner(self, primary: Path, meta: ArtifactMeta, threads: int = 1, runtime: str | None = None):
        from exporters._caffe import CaffeNet
        from validation.runners import NativeRunner

        primary = Path(primary)
        return NativeRunner(meta, lambda: CaffeNet(primary, primary.with_suffix(".caffemodel"), threads=threads), "opencv-caffe", threads)
