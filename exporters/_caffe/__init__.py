"""Caffe toolkit: our own caffe.proto subset, an ONNX -> Caffe writer, an OpenCV runner.

- ``check_supported(model)`` / ``onnx_to_caffe(onnx, prototxt, caffemodel)``: see writer.py
- ``CaffeNet(prototxt, caffemodel, threads=1)``: see runner.py (needs opencv < 5)
"""
from .runner import CaffeNet
from .writer import HEADS, SUPPORTED_OPS, check_supported, onnx_to_caffe

__all__ = ["CaffeNet", "HEADS", "SUPPORTED_OPS", "check_supported", "onnx_to_caffe"]
