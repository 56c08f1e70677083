"""ONNX runtimes: onnxruntime (the default) and OpenCV DNN."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.exporters.onnx.quiet import import_onnxruntime
from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta
from zoo.core.model.layers import onnx_module_name, onnx_origin
from zoo.core.runtime import Runner, Tap


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, meta: ArtifactMeta, path: Path, threads: int = 1):
        super().__init__(meta, threads)
        self.path = Path(path)

    def _load(self) -> None:
        ort = import_onnxruntime()

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
    """Every activation of an ONNX file in onnxruntime: on a copy of the graph (in memory, the file
    untouched), each floating-point node output is added as a graph output.

    Where a tensor comes from is read off the graph: the node that computes it (a Conv node's output is
    that convolution's, a Relu node's that ReLU module's, by the scopes torch.onnx writes into node
    names). In a QDQ int8 graph the value the next layer receives is the DequantizeLinear output, so
    that is what is exposed for a tensor followed by QuantizeLinear/DequantizeLinear (mapped like the
    tensor it quantizes; the quantizer drops a Relu after a Conv, the uint8 clamp at zero doing its
    work, and names the Conv's output after the Relu: that DequantizeLinear output is the conv group
    through its ReLU). Tensors computed from constants alone (dequantized weights) are not activations
    and are not exposed. onnxruntime does not fuse a node whose output is a graph output, so a QDQ group
    runs as the float ops the file spells out rather than as one integer kernel (the same arithmetic up
    to the rounding of the accumulation)."""

    name = "onnxruntime"

    def __init__(self, meta: ArtifactMeta, path: Path, threads: int = 1):
        super().__init__(meta, threads)
        self.path = Path(path)

    def _load(self) -> None:
        import onnx  # heavy
        ort = import_onnxruntime()
        from onnx import TensorProto  # heavy, as above

        try:
            model = onnx.load(str(self.path))
            model = onnx.shape_inference.infer_shapes(model)
        except Exception as e:  # noqa: BLE001 - any parse failure is a user-facing corrupt file
            raise ZooError(f"cannot read ONNX file {self.path}: {str(e).splitlines()[0][:200]}") from None
        g = model.graph
        floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE}
        types = {v.name: v.type.tensor_type.elem_type for v in g.value_info}
        producer = {o: n for n in g.node for o in n.output}
        consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        const = {t.name for t in g.initializer}
        for n in g.node:  # tensors computed from constants alone (e.g. dequantized weights)
            if all(i in const or not i for i in n.input):
                const.update(n.output)
        self.origins: dict[str, tuple[str, str]] = {}
        for n in g.node:
            scope = onnx_module_name(n.name) if n.name.startswith("/") else None
            if scope and n.op_type in ("Conv", "Relu"):
                self.origins[n.output[0]] = (scope, n.op_type)
        for n in g.node:  # DequantizeLinear(QuantizeLinear(t)): t, quantized
            if n.op_type != "DequantizeLinear" or n.input[0] not in producer:
                continue
            q = producer[n.input[0]]
            t = q.input[0] if q.op_type == "QuantizeLinear" else None
            named = onnx_origin(t) if t else None
            if t in self.origins:
                scope, kind = self.origins[t]
                if kind == "Conv" and named and named[1] == "Relu":  # the Relu the quantizer folded away
                    kind = "ConvRelu"
                self.origins[n.output[0]] = (scope, kind)
            elif named and named[1] == "Relu":  # e.g. Add + Relu: the Relu folded into the uint8 clamp
                self.origins[n.output[0]] = named
        have = {o.name for o in g.output}
        self.order = []
        for node in g.node:
            for out in node.output:
                if not out or types.get(out) not in floats or out in have or out in const:
                    continue
                after = consumers.get(out, [])
                if after and all(c.op_type == "QuantizeLinear" for c in after):
                    continue  # exposed as its DequantizeLinear output
                g.output.add().CopyFrom(onnx.helper.make_empty_tensor_value_info(out))
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
        return self.origins.get(name)
