"""``OpenvinoRunner``: an IR on OpenVINO's CPU plugin, compiled on ``__enter__``, released on ``__exit__``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.exporters.openvino.convert import constant_only_ops
from zoo.exporters.openvino.quiet import import_openvino
from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta
from zoo.core.model.layers import onnx_origin
from zoo.core.runtime import Runner, Tap


def _first_line(e: Exception) -> str:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    # OpenVINO's messages start with "Exception from src/...cpp:NN:" and name the cause after it
    useful = [l for l in lines if not l.startswith("Exception from") and not l.startswith("Check '")]
    return ((useful or lines or [type(e).__name__])[0])[:200]


class OpenvinoRunner(Runner):
    """OpenVINO CPU: ``INFERENCE_NUM_THREADS`` = threads, one stream, f32 inference precision (the
    CPU plugin may pick bf16/fp16 by default on processors with that arithmetic), samples one at a time
    (the IR has a batch-1 input); a dynamic IR runs a batch in one request at its own size."""

    name = "openvino"

    def __init__(self, meta: ArtifactMeta, path: Path, threads: int = 1):
        super().__init__(meta, threads)
        self.path = Path(path)
        self.weights = self.path.with_suffix(".bin")
        self.compiled = self.request = None

    def config(self) -> dict:
        return {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY"}

    def _load(self) -> None:
        ov = import_openvino(strict=False)
        for p, what in ((self.path, "IR"), (self.weights, "IR weights")):
            if not p.is_file():
                raise ZooError(f"OpenVINO {what} file {p} not found")
        core = ov.Core()
        try:
            model = core.read_model(str(self.path), str(self.weights))
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and others
            raise ZooError(f"OpenVINO cannot read {self.path.name}: {_first_line(e)}") from None
        if len(model.inputs) != 1:
            raise ZooError(f"{self.path.name}: expected one image input, got {len(model.inputs)}")
        pshape = model.inputs[0].get_partial_shape()
        if pshape.rank.is_dynamic or pshape.rank.get_length() != 4:
            raise ZooError(f"{self.path.name}: expected a 4-D image input, got {pshape}")
        if self.meta.is_dynamic:  # N, H and W free: the whole batch in one request, at its own size
            if pshape[1].is_dynamic or pshape[1].get_length() != 3:
                raise ZooError(f"{self.path.name}: expected a 3-channel image input, got {pshape}")
            self.input_shape = None
        elif pshape.is_dynamic:
            raise ZooError(f"{self.path.name}: expected a static 4-D image input, got {pshape}")
        else:
            self.input_shape = tuple(int(d) for d in pshape.to_shape())
        try:
            self.compiled = core.compile_model(model, "CPU", self.config())
            self.request = self.compiled.create_infer_request()
        except Exception as e:  # noqa: BLE001
            self._unload()
            raise ZooError(f"OpenVINO cannot compile {self.path.name} for the CPU: {_first_line(e)}") from None
        self.out_names = [o.get_any_name() if o.get_names() else f"output{i}" for i, o in enumerate(self.compiled.outputs)]

    def _unload(self) -> None:
        self.request = self.compiled = None

    def property(self, name: str):
        """A property of the compiled model (e.g. INFERENCE_NUM_THREADS)."""
        if self.compiled is None:
            raise ZooError("the OpenVINO model is not compiled: use `with runner:`")
        return self.compiled.get_property(name)

    def _run(self, x):
        if self.input_shape is None:  # dynamic IR: the batch as it is
            try:
                res = self.request.infer({0: x})
            except Exception as e:  # noqa: BLE001
                raise ZooError(f"OpenVINO failed to run {self.path.name} on input {tuple(x.shape)}: {_first_line(e)}") from None
            return [(name, np.array(res[o], dtype=np.float32, copy=True))
                    for name, o in zip(self.out_names, self.compiled.outputs)]
        want = (1,) + tuple(x.shape[1:])
        if want != self.input_shape:
            raise ZooError(f"{self.path.name} takes input {self.input_shape}, got samples of {want}")
        parts = []
        for i in range(x.shape[0]):
            try:
                res = self.request.infer({0: x[i : i + 1]})
            except Exception as e:  # noqa: BLE001
                raise ZooError(f"OpenVINO failed to run {self.path.name}: {_first_line(e)}") from None
            parts.append([np.array(res[o], dtype=np.float32, copy=True) for o in self.compiled.outputs])
        return [(name, np.concatenate([p[j] for p in parts], 0)) for j, name in enumerate(self.out_names)]


class OpenvinoTap(Tap):
    """Every activation of an IR in OpenVINO (for `zoo diff`): the model is read from the file (the
    file untouched), every floating-point output of an operation that computes on the input (not a
    Parameter, Constant or Result, nor an operation on constants alone, such as weight decompression)
    is added as a model output, and the model is compiled on the CPU plugin with the runner's settings.
    OpenVINO keeps the ONNX tensor names on the outputs it converted (a Conv with a bias becomes
    Convolution + Add; the Add carries the Conv's ONNX output name), so names map as ONNX names do.
    The CPU plugin does not fuse an operation whose output is a model output, so a Conv+ReLU group
    runs unfused here (the same arithmetic up to the rounding of the accumulation)."""

    name = "openvino"

    def __init__(self, meta: ArtifactMeta, path: Path, threads: int = 1):
        super().__init__(meta, threads)
        self.path = Path(path)
        self.compiled = self.request = None

    def _load(self) -> None:
        ov = import_openvino(strict=False)
        weights = self.path.with_suffix(".bin")
        for p, what in ((self.path, "IR"), (weights, "IR weights")):
            if not p.is_file():
                raise ZooError(f"OpenVINO {what} file {p} not found")
        core = ov.Core()
        try:
            model = core.read_model(str(self.path), str(weights))
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and others
            raise ZooError(f"OpenVINO cannot read {self.path.name}: {_first_line(e)}") from None
        floats = {ov.Type.f32, ov.Type.f16}
        const = {op.get_instance_id() for op in constant_only_ops(model)}  # weights and their decompression
        ports, self.order = [], []
        for op in model.get_ordered_ops():
            if op.get_type_name() in ("Parameter", "Result") or op.get_instance_id() in const:
                continue
            for out in op.outputs():
                names = sorted(out.get_names())
                if out.get_element_type() in floats and names:
                    ports.append(out)
                    self.order.append(names[0])
        try:
            model.add_outputs(ports)
            self.compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1,
                                                              "INFERENCE_PRECISION_HINT": "f32"})
            self.request = self.compiled.create_infer_request()
        except Exception as e:  # noqa: BLE001
            self._unload()
            raise ZooError(f"OpenVINO cannot expose the tensors of {self.path.name}: {_first_line(e)}") from None
        by_name = {}
        for o in self.compiled.outputs:
            for n in o.get_names():
                by_name.setdefault(n, o)
        self.order = [n for n in self.order if n in by_name]
        self.ports = [by_name[n] for n in self.order]

    def _unload(self) -> None:
        self.request = self.compiled = None

    def _tensors(self, x):
        try:
            res = self.request.infer({0: x})
        except Exception as e:  # noqa: BLE001
            raise ZooError(f"OpenVINO failed to run {self.path.name}: {_first_line(e)}") from None
        return [(n, np.array(res[o], dtype=np.float32, copy=True)) for n, o in zip(self.order, self.ports)]

    def origin(self, name: str):
        return onnx_origin(name)
