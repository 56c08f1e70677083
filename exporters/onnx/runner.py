"""ONNX runtimes: onnxruntime (the default) and OpenCV DNN."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta
from zoo.core.model.layers import onnx_origin
from zoo.core.runtime import Runner, Tap


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, meta: ArtifactMeta, path: Path, threads: int = 1):
        super().__init__(meta, threads)
        self.path = Path(path)

    def _load(self) -> None:
        import onnxruntime as ort  # optional runtime: imported when used

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        try:
            self.sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises many types
            raise ZooError(f"onnxruntime cannot load {self.path}: {str(e).splitlines()[0][:200]}") from None
        self.input_name = self.sess.get_inputs()[0].name
        shape = self.sess.get_inputs()[0].shape
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def _run(self, x):
        names = [o.name for o in self.sess.get_outputs()]
        if self.meta.head == "nms":
            return [(f"detections{i}", self.sess.run(["detections"], {self.input_name: x[i : i + 1]})[0]) for i in range(x.shape[0])]
        if self.fixed_batch == 1 and x.shape[0] > 1:
            parts = [self.sess.run(None, {self.input_name: x[i : i + 1]}) for i in range(x.shape[0])]
            outs = [np.concatenate([p[j] for p in parts], 0) for j in range(len(names))]
        else:
            outs = self.sess.run(None, {self.input_name: x})
        return list(zip(names, outs))


class OpenCVRunner(Runner):
    """OpenCV DNN for ONNX files."""

    name = "opencv"

    def __init__(self, meta: ArtifactMeta, path: Path, threads: int = 1):
        super().__init__(meta, threads)
        self.path = Path(path)

    def _load(self) -> None:
        import cv2  # optional runtime: imported when used

        cv2.setNumThreads(self.threads)
        try:
            self.net = cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as e:
            raise ZooError(f"OpenCV DNN cannot load {self.path}: {str(e).strip().splitlines()[-1][:200]}") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.out_names = list(self.net.getUnconnectedOutLayersNames())

    def _run(self, x):
        import cv2  # loaded by _load already

        results = []
        for i in range(x.shape[0]):
            self.net.setInput(x[i : i + 1])
            try:
                outs = self.net.forward(self.out_names)
            except cv2.error as e:
                raise ZooError(f"OpenCV DNN failed on {self.path}: {str(e).strip().splitlines()[-1][:200]}") from None
            results.append(outs)
        return [
            (name, np.concatenate([r[j].reshape(1, -1) for r in results], 0)) for j, name in enumerate(self.out_names)
        ]


class OnnxRuntimeTap(Tap):
    """Every node output of an ONNX file in onnxruntime: on a copy of the graph (in memory, the file
    untouched), each floating-point node output is added as a graph output. onnxruntime does not fuse
    away a node whose output is a graph output, so a fusion it would make (e.g. a QDQ group into an
    integer convolution) is computed unfused here, as the file describes it."""

    name = "onnxruntime"

    def __init__(self, meta: ArtifactMeta, path: Path, threads: int = 1):
        super().__init__(meta, threads)
        self.path = Path(path)

    def _load(self) -> None:
        import onnx  # heavy
        import onnxruntime as ort  # optional runtime: imported when used
        from onnx import TensorProto

        try:
            model = onnx.load(str(self.path))
            model = onnx.shape_inference.infer_shapes(model)
        except Exception as e:  # noqa: BLE001 - any parse failure is a user-facing corrupt file
            raise ZooError(f"cannot read ONNX file {self.path}: {str(e).splitlines()[0][:200]}") from None
        floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE}
        types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
        have = {o.name for o in model.graph.output}
        self.order = []
        for node in model.graph.node:
            for out in node.output:
                if out and types.get(out) in floats and out not in have:
                    model.graph.output.add().CopyFrom(onnx.helper.make_empty_tensor_value_info(out))
                    self.order.append(out)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        try:
            self.sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises many types
            raise ZooError(f"onnxruntime cannot load {self.path} with its intermediates exposed: "
                           f"{str(e).splitlines()[0][:200]}") from None
        self.input_name = self.sess.get_inputs()[0].name

    def _unload(self) -> None:
        self.sess = None

    def _tensors(self, x):
        outs = self.sess.run(self.order, {self.input_name: x})
        return list(zip(self.order, outs))

    def origin(self, name: str):
        return onnx_origin(name)
