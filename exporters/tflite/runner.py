"""The two runtimes of this package: LiteRT for ``.tflite`` files, TensorFlow for SavedModels.

Both follow the runner lifecycle: the constructor only stores its arguments, the model is
loaded on ``__enter__`` and released on ``__exit__``; ``infer`` takes NHWC float32 batches.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from zoo.exporters.tflite.network import INPUT_NAME, SIGNATURE_KEY, conv_module
from zoo.core.errors import ZooError
from zoo.core.runtime import Tap


def signature_io(it: Any) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(name, tensor details) of inputs and outputs, named by the signature when there is one."""
    in_details = it.get_input_details()
    out_details = it.get_output_details()
    by_index_in = {d["index"]: d for d in in_details}
    by_index_out = {d["index"]: d for d in out_details}
    sigs = it._get_full_signature_list() if hasattr(it, "_get_full_signature_list") else None
    if sigs:
        sig = sigs.get(SIGNATURE_KEY) or next(iter(sigs.values()))
        ins = [(n, by_index_in[i]) for n, i in sig.get("inputs", {}).items() if i in by_index_in]
        outs = [(n, by_index_out[i]) for n, i in sig.get("outputs", {}).items() if i in by_index_out]
        if len(ins) == len(in_details) and len(outs) == len(out_details):
            return ins, outs
    return [(d["name"], d) for d in in_details], [(d["name"], d) for d in out_details]



def _tf_threads(tf, threads: int) -> None:
    """TensorFlow's thread pools for a SavedModel run: ``threads`` inside an op, one across ops."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process

class TfliteNet:
    """Runs an UltraFace ``.tflite`` with LiteRT (``ai_edge_litert``)::

        with TfliteNet(path, threads=2) as net:
            out = net.infer(x)

    ``infer(x)`` takes ``(N, H, W, 3)`` float32 preprocessed NHWC images and
    returns ``{"scores": (N, P, K), "boxes": (N, P, 4)}`` float32; a model
    with batch 1 is run once per image.  Int8/uint8 inputs are quantized with
    the input tensor's scale/zero point, quantized outputs dequantized with
    their own.  Outputs are told apart by shape (last dim K vs 4); only when
    K == 4 do names (signature or tensor names) and then order decide.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 1, preserve_all_tensors: bool = False):
        self.path, self.threads = Path(path), threads
        self.preserve_all_tensors = bool(preserve_all_tensors)  # for `all_tensors` (zoo diff)
        self._it = None

    def __enter__(self) -> "TfliteNet":
        try:
            from ai_edge_litert.interpreter import Interpreter  # optional runtime: imported when used
        except ImportError as exc:
            try:  # LiteRT's releases before ai-edge-litert (`zoo compat` tests them)
                from tflite_runtime.interpreter import Interpreter  # optional runtime: LiteRT's older line
            except ImportError:
                raise ZooError(f"ai-edge-litert is not installed: {exc}") from None
        threads, p = self.threads, self.path
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ZooError(f"threads must be a positive integer, got {threads!r}")
        if not p.is_file():
            raise ZooError(f"no such TFLite file: {p}")
        try:
            with warnings.catch_warnings():  # preserving all tensors warns that it is for debugging: it is
                warnings.simplefilter("ignore")
                it = Interpreter(model_path=str(p), num_threads=threads,
                                 **({"experimental_preserve_all_tensors": True} if self.preserve_all_tensors else {}))
            it.allocate_tensors()
        except Exception as exc:
            raise ZooError(f"cannot load TFLite model {p}: {exc}") from None
        ins, outs = signature_io(it)
        if len(ins) != 1:
            raise ZooError(f"{p}: expected 1 input, found {len(ins)}")
        self._in = ins[0][1]
        shape = tuple(int(s) for s in self._in["shape"])
        if len(shape) != 4 or shape[3] != 3:
            raise ZooError(f"{p}: input shape {shape} is not NHWC (N, H, W, 3)")
        self.input_shape = shape
        sig = tuple(int(v) for v in self._in.get("shape_signature", shape))
        self.free = [i for i, v in enumerate(sig) if v == -1]  # the free axes of a dynamic file
        self._scores, self._boxes = self._pick_outputs(outs)
        self._it = it
        return self

    def __exit__(self, *exc: Any) -> None:
        self._it = None

    def settings(self) -> dict:
        """LiteRT as an app gets it: its default op resolver, which applies the XNNPACK delegate with
        XNNPACK's defaults (fp32 arithmetic for float models; no fp16 inference unless asked)."""
        return {"options": {"op_resolver": "default (XNNPACK delegate, its defaults)", "num_threads": self.threads},
                "reduced": None}

    def _pick_outputs(self, outs: list[tuple[str, dict]]) -> tuple[dict, dict]:
        if len(outs) != 2:
            raise ZooError(f"{self.path}: expected 2 outputs (scores, boxes), found {len(outs)}")
        for _, d in outs:
            if len(d["shape"]) != 3:
                raise ZooError(f"{self.path}: output shape {tuple(d['shape'])} is not (N, P, C)")
        if outs[0][1]["shape"][1] != outs[1][1]["shape"][1]:
            raise ZooError(f"{self.path}: outputs disagree on the number of priors")
        last = [int(d["shape"][-1]) for _, d in outs]
        if last.count(4) == 1:
            boxes = outs[last.index(4)][1]
            scores = outs[1 - last.index(4)][1]
            return scores, boxes
        if last.count(4) == 0:
            raise ZooError(f"{self.path}: no output with 4 box coordinates (shapes {last})")
        # K == 4: names first, order (scores, boxes) last.
        names = [n.lower() for n, _ in outs]
        for i in (0, 1):
            other = names[1 - i]
            if "box" in names[i] and "box" not in other:
                return outs[1 - i][1], outs[i][1]
            if "score" in names[i] and "score" not in other:
                return outs[i][1], outs[1 - i][1]
        return outs[0][1], outs[1][1]

    def _run_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        it = self._it
        d = self._in
        dtype = np.dtype(d["dtype"])
        if np.issubdtype(dtype, np.integer):
            scale, zp = d["quantization"]
            if not scale:
                raise ZooError(f"{self.path}: integer input without quantization parameters")
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)
        else:
            x = x.astype(dtype, copy=False)
        try:
            it.set_tensor(d["index"], np.ascontiguousarray(x))
            it.invoke()
            res = []
            for o in (self._scores, self._boxes):
                y = it.get_tensor(o["index"])
                if np.issubdtype(y.dtype, np.integer):
                    scale, zp = o["quantization"]
                    y = (y.astype(np.float32) - zp) * np.float32(scale)
                res.append(y.astype(np.float32, copy=True))
        except ZooError:
            raise
        except Exception as exc:
            raise ZooError(f"LiteRT inference failed on {self.path}: {exc}") from None
        return res[0], res[1]

    def all_tensors(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Run one (1, H, W, 3) sample and return every op's outputs (name, float32 array, NHWC as
        stored; integer tensors dequantized), in execution order; needs ``preserve_all_tensors``."""
        if self._it is None or not self.preserve_all_tensors:
            raise ZooError("TfliteNet.all_tensors needs `with TfliteNet(..., preserve_all_tensors=True) as net:`")
        self._run_one(np.asarray(x, dtype=np.float32))
        it = self._it
        details = {d["index"]: d for d in it.get_tensor_details()}
        out, seen = [], set()
        try:
            for op in it._get_ops_details():
                if op["op_name"] == "DELEGATE":  # a delegate's node lists the outputs of the ops it took over
                    continue
                for i in op["outputs"]:
                    d = details.get(int(i))
                    if d is None or int(i) in seen:
                        continue
                    seen.add(int(i))
                    y = it.get_tensor(int(i))
                    if np.issubdtype(y.dtype, np.integer):
                        scale, zp = d["quantization"]
                        if not scale:
                            continue  # an index or shape tensor, not an activation
                        y = (y.astype(np.float32) - zp) * np.float32(scale)
                    out.append((d["name"], np.array(y, dtype=np.float32, copy=True)))
        except ValueError as exc:
            raise ZooError(f"LiteRT cannot expose the intermediate tensors of {self.path}: {exc}") from None
        return out

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self._it is None:
            raise ZooError("TfliteNet.infer called outside `with TfliteNet(...) as net:`")
        x = np.asarray(x)
        if self.free and x.ndim == 4 and x.shape[0] >= 1 and x.shape[3] == self.input_shape[3]:
            return self._infer_resized(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape[1:]:
            raise ZooError(f"input must have shape (N, {', '.join(map(str, self.input_shape[1:]))}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ZooError(f"input must be float32 preprocessed images, got {x.dtype}")
        x = x.astype(np.float32, copy=False)
        n, mb = x.shape[0], self.input_shape[0]
        if n == mb:
            chunks = [x]
        elif mb == 1:
            chunks = [x[i:i + 1] for i in range(n)]
        else:
            raise ZooError(f"model batch is {mb}; cannot run a batch of {n}")
        scores, boxes = zip(*(self._run_one(c) for c in chunks))
        return {"scores": np.concatenate(scores, axis=0), "boxes": np.concatenate(boxes, axis=0)}


    def _infer_resized(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """A file with free dimensions: the input resized to the batch's own shape (LiteRT's
        ``resize_tensor_input``), the whole batch in one invocation."""
        if not np.issubdtype(x.dtype, np.floating):
            raise ZooError(f"input must be float32 preprocessed images, got {x.dtype}")
        shape = tuple(int(v) for v in x.shape)
        if shape != self.input_shape:
            try:
                self._it.resize_tensor_input(self._in["index"], list(shape), strict=True)
                self._it.allocate_tensors()
            except Exception as exc:
                raise ZooError(f"LiteRT cannot resize {self.path} to input {shape}: {exc}") from None
            self.input_shape = shape
        s, b = self._run_one(x.astype(np.float32, copy=False))
        return {"scores": s, "boxes": b}


class SavedModelNet:
    """Runs a SavedModel folder's ``serving_default`` signature in TensorFlow, one image at a time."""

    def __init__(self, folder: Path, threads: int = 1):
        self.folder, self.threads = Path(folder), threads
        self.fn = None

    def __enter__(self) -> "SavedModelNet":
        import tensorflow as tf  # heavy: imported when used

        _tf_threads(tf, self.threads)
        try:
            self.fn = tf.saved_model.load(str(self.folder)).signatures[SIGNATURE_KEY]
        except Exception as e:  # noqa: BLE001 - TF raises many types
            raise ZooError(f"TensorFlow cannot load the SavedModel {self.folder}: {str(e).splitlines()[0][:200]}") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.fn = None

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf  # heavy: already loaded by __enter__

        if self.fn is None:
            raise ZooError("SavedModelNet.infer called outside `with SavedModelNet(...) as net:`")
        outs = [self.fn(**{INPUT_NAME: tf.constant(x[i : i + 1])}) for i in range(x.shape[0])]
        return {k: np.concatenate([o[k].numpy() for o in outs], 0) for k in outs[0]}


def tf_origin(name: str) -> tuple[str, str] | None:
    """Where a TFLite (or TensorFlow) tensor comes from: each convolution's ops run in a name scope of
    its PyTorch module path, BatchNorm folded in (zoo.exporters.tflite.network), so a tensor naming a conv
    op is that conv's output, with its ReLU when the name (a fused op's) names the scope's Relu too."""
    scope = conv_module(name)
    if scope is None:
        return None
    return scope, "ConvRelu" if f"{scope}/Relu" in name.split(";") else "Conv"


class TfliteTap(Tap):
    """Every tensor of a .tflite model in LiteRT (``experimental_preserve_all_tensors``), NHWC."""

    name = "litert"
    layout = "NHWC"

    def __init__(self, meta, path, threads: int = 1):
        super().__init__(meta, threads)
        self.net = TfliteNet(path, threads=threads, preserve_all_tensors=True)

    def _load(self) -> None:
        self.net.__enter__()

    def _unload(self) -> None:
        self.net.__exit__(None, None, None)

    def _tensors(self, x):
        return self.net.all_tensors(x)

    def origin(self, name: str):
        return tf_origin(name)


def tf_graph_origin(name: str) -> tuple[str, str] | None:
    """Where a tensor of our TensorFlow graph comes from ('base_net.1.0/BiasAdd:0': the conv of module
    base_net.1.0 with its BatchNorm folded in; '.../Relu:0': the same through its ReLU). The conv op's
    own output, before its bias, is no PyTorch module's output: None."""
    scope, _, op = name.rsplit(":", 1)[0].rpartition("/")
    if not scope:
        return None
    if op == "BiasAdd":
        return scope, "Conv"
    if op == "Relu":
        return scope, "ConvRelu"
    return None


class SavedModelTap(Tap):
    """Every intermediate tensor of a SavedModel in TensorFlow: the serving signature's function body
    (the graph the SavedModel stores) imported on its own and pruned to fetch every float op output.
    Our SavedModels hold their weights as constants (zoo.exporters.tflite.network), so the body runs alone."""

    name = "tensorflow"
    layout = "NHWC"

    def __init__(self, meta, primary, threads: int = 1):
        super().__init__(meta, threads)
        self.folder = Path(primary).parent

    def _load(self) -> None:
        import tensorflow as tf  # heavy: imported when used
        from tensorflow.python.framework import function_def_to_graph  # heavy; TF's own FunctionDef importer

        _tf_threads(tf, self.threads)
        try:
            gd = tf.saved_model.load(str(self.folder)).signatures[SIGNATURE_KEY].graph.as_graph_def()
            calls = [n for n in gd.node if n.op in ("PartitionedCall", "StatefulPartitionedCall")]
            if len(calls) != 1:
                raise ValueError(f"expected one function call in the signature, found {len(calls)}")
            fname = calls[0].attr["f"].func.name
            fdef = next(f for f in gd.library.function if f.signature.name == fname)
            body = function_def_to_graph.function_def_to_graph(fdef)
            if len(body.inputs) != 1:
                raise ValueError(f"the signature body takes {len(body.inputs)} inputs (variables?), expected 1")
            inner = body.as_graph_def()
            wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(inner, name=""), [])
            self.order = [t.name for op in body.get_operations() if op.type not in ("Const", "Placeholder", "Identity")
                          for t in op.outputs if t.dtype == tf.float32]
            g = wrapped.graph
            self.fn = wrapped.prune(feeds=[g.get_tensor_by_name(body.inputs[0].name)],
                                    fetches=[g.get_tensor_by_name(n) for n in self.order])
        except Exception as e:  # noqa: BLE001 - TF raises many types
            raise ZooError(f"TensorFlow cannot expose the intermediate tensors of the SavedModel {self.folder}: "
                           f"{str(e).splitlines()[0][:200]}") from None
        self._tf = tf

    def _unload(self) -> None:
        self.fn = None

    def _tensors(self, x):
        outs = self.fn(self._tf.constant(x))
        return [(n, o.numpy()) for n, o in zip(self.order, outs)]

    def origin(self, name: str):
        return tf_graph_origin(name)
