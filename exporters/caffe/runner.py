"""Run a Caffe .prototxt + .caffemodel pair with OpenCV's DNN module.

OpenCV 5 removed the Caffe importer, so this needs opencv-python(-headless)
< 5 (the project's `caffe` extra pins it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.exporters.caffe import caffe_pb2
from zoo.core.errors import ZooError
from zoo.core.model.layers import onnx_origin
from zoo.core.runtime import Tap

_NEEDS = ("the caffe target needs opencv-python-headless < 5 (OpenCV 5 removed the Caffe importer); "
          "install the project's `caffe` extra, which pins it")


def _import_cv2() -> Any:
    try:
        import cv2  # type: ignore[import-not-found]  # optional runtime: imported when used
    except ImportError as exc:
        raise ZooError(f"caffe: OpenCV is not installed: {_NEEDS}") from exc
    try:
        major = int(str(cv2.__version__).split(".")[0])
    except ValueError:
        major = 0
    if major >= 5 or not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise ZooError(f"caffe: OpenCV {cv2.__version__} has no Caffe importer: {_NEEDS}")
    return cv2


def _input_hw(prototxt: Path) -> tuple[int, int] | None:
    """(H, W) of the net's Input layer, if the prototxt declares one we can read."""
    try:
        from google.protobuf import text_format  # optional runtime (caffe extra)

        net = caffe_pb2.NetParameter()
        text_format.Parse(prototxt.read_text(encoding="utf-8"), net, allow_unknown_field=True)
    except Exception:
        return None
    for layer in net.layer:
        if layer.type == "Input" and layer.input_param.shape:
            dims = list(layer.input_param.shape[0].dim)
            if len(dims) == 4:
                return int(dims[2]), int(dims[3])
    if net.input_shape and len(net.input_shape[0].dim) == 4:
        return int(net.input_shape[0].dim[2]), int(net.input_shape[0].dim[3])
    if len(net.input_dim) == 4:
        return int(net.input_dim[2]), int(net.input_dim[3])
    return None


class CaffeNet:
    """A Caffe detector net run by OpenCV (backend OpenCV, target CPU).

    ``with CaffeNet(prototxt, caffemodel) as net: outs = net.infer(x)`` with x
    float32 (N, 3, H, W); ``outs`` is {"scores": (N, P, K), "boxes": (N, P, 4)}.
    Outputs are found by blob name (`scores`, `boxes`), else by shape (the one
    whose last axis is 4 is `boxes`). ``threads`` is applied around each
    forward pass (cv2.setNumThreads) and the previous value restored.
    """

    def __init__(self, prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str], *, threads: int = 1):
        self.prototxt = Path(prototxt)
        self.caffemodel = Path(caffemodel)
        if int(threads) < 1:
            raise ZooError(f"caffe: threads must be >= 1, got {threads}")
        self.threads = int(threads)
        self._net: Any = None

    def __enter__(self) -> "CaffeNet":
        self._cv2 = cv2 = _import_cv2()
        for p in (self.prototxt, self.caffemodel):
            if not p.is_file():
                raise ZooError(f"caffe: file not found: {p}")
        self.input_hw = _input_hw(self.prototxt)
        try:
            net = cv2.dnn.readNetFromCaffe(str(self.prototxt), str(self.caffemodel))
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            self.output_names: list[str] = list(net.getUnconnectedOutLayersNames())
        except cv2.error as exc:
            raise ZooError(f"caffe: OpenCV cannot load {self.prototxt.name} + {self.caffemodel.name}: "
                           f"{str(exc).strip()}") from exc
        if len(self.output_names) != 2:
            raise ZooError(f"caffe: expected 2 network outputs (scores, boxes), found {self.output_names}")
        self._net = net
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._net = None

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        cv2 = self._cv2
        prev = cv2.getNumThreads()
        cv2.setNumThreads(self.threads)
        try:
            self._net.setInput(x)
            outs = self._net.forward(self.output_names)
        except cv2.error as exc:
            raise ZooError(f"caffe: OpenCV inference failed: {str(exc).strip()}") from exc
        finally:
            cv2.setNumThreads(prev)
        return [np.array(o, dtype=np.float32, copy=True) for o in outs]

    def _name_outputs(self, outs: list[np.ndarray], n: int) -> dict[str, np.ndarray]:
        arrs = [o.reshape(n, -1, o.shape[-1]) if o.ndim >= 2 else o for o in outs]
        names = self.output_names
        if set(names) == {"scores", "boxes"}:
            return {name: arr for name, arr in zip(names, arrs)}
        four = [i for i, a in enumerate(arrs) if a.shape[-1] == 4]
        if len(four) != 1:
            raise ZooError(f"caffe: cannot tell scores from boxes among outputs {names} "
                           f"with shapes {[a.shape for a in arrs]}")
        b = four[0]
        return {"scores": arrs[1 - b], "boxes": arrs[b]}

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run the net on x (N, 3, H, W) float32; returns {"scores", "boxes"} as (N, P, K) / (N, P, 4)."""
        if self._net is None:
            raise ZooError("caffe: the net is closed")
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ZooError(f"caffe: input must be (N, 3, H, W), got shape {x.shape}")
        if self.input_hw is not None and tuple(x.shape[2:]) != self.input_hw:
            raise ZooError(f"caffe: input is {x.shape[3]}x{x.shape[2]} but the net expects "
                           f"{self.input_hw[1]}x{self.input_hw[0]} (W x H)")
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0]
        if n == 0:
            raise ZooError("caffe: empty batch")
        outs = self._forward(x)
        if n > 1 and any(o.shape[0] != n for o in outs):
            # A net with a hard-coded batch of 1 in its Reshape layers: run image by image.
            per = [self._forward(x[i:i + 1]) for i in range(n)]
            outs = [np.concatenate([p[j] for p in per], axis=0) for j in range(len(outs))]
        return self._name_outputs(outs, n)


class CaffeTap(Tap):
    """Every layer output of a Caffe net in OpenCV DNN (``forward`` of every layer name). OpenCV's
    layer fusion is turned off, so each layer's own output is what is read (with fusion on, OpenCV
    would hand back a convolution's output with the ReLU after it already applied). Our writer
    (zoo.exporters.caffe.writer) names each layer and its top by the ONNX tensor it computes, so the
    names map as ONNX names do."""

    name = "opencv-caffe"

    def __init__(self, meta, primary, threads: int = 1):
        super().__init__(meta, threads)
        self.net = CaffeNet(primary, Path(primary).with_suffix(".caffemodel"), threads=threads)

    def _load(self) -> None:
        self.net.__enter__()
        cv = self.net._net
        cv.enableFusion(False)
        self.names = [n for n in cv.getLayerNames() if cv.getLayer(n).type != "Input"]

    def _unload(self) -> None:
        self.net.__exit__(None, None, None)

    def _tensors(self, x):
        cv2 = self.net._cv2
        prev = cv2.getNumThreads()
        cv2.setNumThreads(self.threads)
        try:
            self.net._net.setInput(x)
            outs = self.net._net.forward(self.names)
        except cv2.error as exc:
            raise ZooError(f"caffe: OpenCV cannot expose the layer outputs: {str(exc).strip()}") from None
        finally:
            cv2.setNumThreads(prev)
        return [(n, np.array(o, dtype=np.float32, copy=True)) for n, o in zip(self.names, outs)]

    def origin(self, name: str):
        return onnx_origin(name)
