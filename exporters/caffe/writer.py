"""ONNX -> Caffe (.prototxt + .caffemodel) writer for UltraFace graphs.

The input is our exported ONNX graph: fixed batch 1, one input ``input``
(1, 3, H, W), BatchNorm folded by onnxsim, and the raw head: ``scores``
(1, P, K) softmaxed and ``boxes`` (1, P, 4) raw offsets. Every ONNX node maps
to at most one standard Caffe layer (the layer and its top blob take the ONNX
output tensor name, so the Caffe outputs are ``scores`` and ``boxes`` too).

Files written:

* ``.prototxt``: the text NetParameter, layers and their parameters, no blobs.
* ``.caffemodel``: the binary NetParameter carrying, for each layer, its
  name, type, bottoms, tops and weight blobs. Layer parameters live in the
  .prototxt only: consumers (Caffe's ``CopyTrainedLayersFrom``, OpenCV's
  ``readNetFromCaffe``) take nothing else from the weights file, and leaving
  them out keeps the binary free of fork-specific field numbers (Permute is
  148 in OpenCV's schema, 202 in the SSD fork, and 148 is ``clip_param`` in
  upstream BVLC).

``head="decoded"`` appends standard layers (Slice, Scale, Exp, Eltwise,
Concat) that decode ``boxes`` with the priors of ``zoo.core.model.priors`` into corner
form (x1, y1, x2, y2) in [0, 1] coordinates, exactly the formula of the
original's post-processed graphs; ``scores`` is unchanged.

Output is deterministic: the same ONNX file gives byte-identical files.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.exporters.caffe import caffe_pb2
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes
from zoo.core.model.priors import CENTER_VARIANCE, SIZE_VARIANCE, generate_priors

#: ONNX op types this writer maps (Constant nodes only feed other nodes).
SUPPORTED_OPS: tuple[str, ...] = (
    "Add",
    "BatchNormalization",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "Mul",
    "Relu",
    "Reshape",
    "Softmax",
    "Transpose",
)

HEADS: tuple[str, ...] = ("raw", "decoded")

_SHAPE_OPS = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "ConstantOfShape", "Cast", "Slice"})


# --------------------------------------------------------------------------
# In-memory network description


@dataclass
class _Layer:
    name: str
    type: str
    bottom: list[str]
    top: list[str]
    params: dict[str, Any] = field(default_factory=dict)  # param field name -> dict of values
    blobs: list[np.ndarray] = field(default_factory=list)
    dead: bool = False


def _node_label(node: Any, index: int) -> str:
    if node.name:
        return f"node '{node.name}'"
    out = node.output[0] if len(node.output) else "?"
    return f"node #{index} producing '{out}'"


def _fail(node: Any, index: int, why: str | None = None) -> None:
    msg = f"caffe: cannot map ONNX op '{node.op_type}' ({_node_label(node, index)})"
    if why:
        msg += f": {why}"
    else:
        msg += f"; supported: {', '.join(op for op in SUPPORTED_OPS if op != 'Constant')}"
        if node.op_type in _SHAPE_OPS:
            msg += " (shape computations: simplify the graph with onnxsim at a fixed input size first)"
    raise ZooError(msg)


def _attrs(node: Any) -> dict[str, Any]:
    import onnx  # heavy: imported when used

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _static_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Tensor name -> static shape (only fully known shapes)."""
    import onnx  # heavy: imported when used

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises various types
        raise ZooError(f"caffe: ONNX shape inference failed: {exc}") from exc
    shapes: dict[str, tuple[int, ...]] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = []
        for d in t.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims = None
                break
        if dims is not None:
            shapes[vi.name] = tuple(dims)
    return shapes


def _build(model: Any, head: str = "raw") -> tuple[list[_Layer], tuple[int, ...], dict[str, tuple[int, ...]]]:
    """Translate the ONNX graph into Caffe layers (no I/O). Raises ZooError."""
    from onnx import numpy_helper  # heavy

    if head not in HEADS:
        raise ZooError(f"caffe: unknown head {head!r}; choose one of {', '.join(HEADS)}")
    g = model.graph
    opset = _opset(model)

    # Pass 1: every op must be known before anything else is looked at.
    for i, node in enumerate(g.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            _fail(node, i)

    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [vi for vi in g.input if vi.name not in consts]
    if len(inputs) != 1:
        raise ZooError(f"caffe: expected exactly one graph input, found {[vi.name for vi in inputs]}")
    shapes = _static_shapes(model)
    in_name = inputs[0].name
    in_shape = shapes.get(in_name)
    if in_shape is None or len(in_shape) != 4:
        raise ZooError(f"caffe: graph input '{in_name}' needs a static 4-D shape (N, C, H, W), got {in_shape}")
    if in_shape[0] != 1:
        raise ZooError(f"caffe: graph input '{in_name}' must have batch 1, got {in_shape}")

    consumers: Counter[str] = Counter()
    for node in g.node:
        for name in node.input:
            if name:
                consumers[name] += 1
    graph_outputs = [o.name for o in g.output]
    for name in graph_outputs:
        consumers[name] += 1  # an output is a consumer: never fuse it away

    layers: list[_Layer] = [
        _Layer(name=in_name, type="Input", bottom=[], top=[in_name],
               params={"input_param": {"shape": [list(in_shape)]}})
    ]
    producer: dict[str, _Layer] = {in_name: layers[0]}
    # Tensors that are `scale * bottom` (an un-emitted Mul by a scalar), for fusing into Eltwise.
    scaled: dict[str, tuple[str, float, _Layer]] = {}

    def shape_of(name: str, node: Any, i: int) -> tuple[int, ...]:
        s = shapes.get(name)
        if s is None:
            _fail(node, i, f"tensor '{name}' has no static shape (run onnxsim with fixed input shape)")
        return s  # type: ignore[return-value]

    def need_tensor(name: str, node: Any, i: int) -> str:
        if name in consts:
            _fail(node, i, f"input '{name}' is a constant where a feature map is expected")
        if name not in producer:
            _fail(node, i, f"input '{name}' is not produced by a mapped layer")
        return name

    def emit(layer: _Layer) -> _Layer:
        layers.append(layer)
        for t in layer.top:
            producer[t] = layer
        return layer

    for i, node in enumerate(g.node):
        op = node.op_type
        at = _attrs(node)
        out = node.output[0]

        if op == "Constant":
            if "value" not in at:
                _fail(node, i, "only Constant with a tensor 'value' is supported")
            consts[out] = numpy_helper.to_array(at["value"])
            continue

        if op == "Conv":
            x = need_tensor(node.input[0], node, i)
            if node.input[1] not in consts:
                _fail(node, i, "weights must be a constant initializer")
            w = consts[node.input[1]].astype(np.float32)
            if w.ndim != 4:
                _fail(node, i, f"only 2-D convolution is supported (weight shape {w.shape})")
            b = None
            if len(node.input) > 2 and node.input[2]:
                if node.input[2] not in consts:
                    _fail(node, i, "bias must be a constant initializer")
                b = consts[node.input[2]].astype(np.float32).reshape(-1)
            auto_pad = at.get("auto_pad", b"NOTSET")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
            if auto_pad not in ("NOTSET", "VALID"):
                _fail(node, i, f"auto_pad={auto_pad} is not supported (export with explicit pads)")
            kh, kw = int(w.shape[2]), int(w.shape[3])
            ks = list(at.get("kernel_shape", [kh, kw]))
            if ks != [kh, kw]:
                _fail(node, i, f"kernel_shape {ks} disagrees with weights {w.shape}")
            pads = list(at.get("pads", [0, 0, 0, 0]))
            if pads[0] != pads[2] or pads[1] != pads[3]:
                _fail(node, i, f"asymmetric padding {pads} has no Caffe equivalent")
            strides = list(at.get("strides", [1, 1]))
            dil = list(at.get("dilations", [1, 1]))
            group = int(at.get("group", 1))
            cp: dict[str, Any] = {
                "num_output": int(w.shape[0]),
                "bias_term": b is not None,
                "group": group,
                "pad_h": int(pads[0]), "pad_w": int(pads[1]),
                "kernel_h": kh, "kernel_w": kw,
                "stride_h": int(strides[0]), "stride_w": int(strides[1]),
                "dilation": [int(dil[0])] if dil[0] == dil[1] else [int(dil[0]), int(dil[1])],
            }
            blobs = [w] + ([b] if b is not None else [])
            emit(_Layer(out, "Convolution", [x], [out], {"convolution_param": cp}, blobs))
            continue

        if op == "BatchNormalization":
            x = need_tensor(node.input[0], node, i)
            try:
                gamma, beta, mean, var = (consts[n].astype(np.float64) for n in node.input[1:5])
            except KeyError:
                _fail(node, i, "scale/bias/mean/var must be constant initializers")
            if len(node.output) > 1 and any(node.output[1:]):
                _fail(node, i, "training-mode BatchNormalization (extra outputs) is not supported")
            eps = float(at.get("epsilon", 1e-5))
            a = gamma / np.sqrt(var + eps)
            c = beta - mean * a
            prev = producer[x]
            if prev.type == "Convolution" and consumers[x] == 1 and x not in graph_outputs:
                # Fold into the convolution: w' = w * a (per out channel), b' = b * a + c.
                w = prev.blobs[0].astype(np.float64) * a.reshape(-1, 1, 1, 1)
                bb = prev.blobs[1].astype(np.float64) if len(prev.blobs) > 1 else np.zeros_like(a)
                prev.blobs = [w.astype(np.float32), (bb * a + c).astype(np.float32)]
                prev.params["convolution_param"]["bias_term"] = True
                del producer[x]
                prev.name = out
                prev.top = [out]
                producer[out] = prev
            else:
                emit(_Layer(out, "Scale", [x], [out], {"scale_param": {"axis": 1, "num_axes": 1, "bias_term": True}},
                            [a.astype(np.float32), c.astype(np.float32)]))
            continue

        if op == "Relu":
            emit(_Layer(out, "ReLU", [need_tensor(node.input[0], node, i)], [out]))
            continue

        if op == "Clip":
            lo = at.get("min")
            hi = at.get("max")
            if len(node.input) > 1 and node.input[1]:
                if node.input[1] not in consts:
                    _fail(node, i, "min must be a constant")
                lo = float(consts[node.input[1]])
            if len(node.input) > 2 and node.input[2]:
                if node.input[2] not in consts:
                    _fail(node, i, "max must be a constant")
                hi = float(consts[node.input[2]])
            if lo != 0.0 or (hi is not None and np.isfinite(hi)):
                _fail(node, i, f"only Clip(min=0, max=inf) (= ReLU) is supported, got min={lo}, max={hi}")
            emit(_Layer(out, "ReLU", [need_tensor(node.input[0], node, i)], [out]))
            continue

        if op == "Mul":
            a_name, b_name = node.input[0], node.input[1]
            if a_name in consts and b_name not in consts:
                a_name, b_name = b_name, a_name
            if b_name not in consts or consts[b_name].size != 1:
                _fail(node, i, "only multiplication by a scalar constant is supported")
            x = need_tensor(a_name, node, i)
            s = float(consts[b_name].reshape(-1)[0])
            layer = emit(_Layer(out, "Power", [x], [out], {"power_param": {"power": 1.0, "scale": s, "shift": 0.0}}))
            scaled[out] = (x, s, layer)
            continue

        if op == "Add":
            if any(n in consts for n in node.input):
                _fail(node, i, "adding a constant tensor is not supported")
            xs = [need_tensor(n, node, i) for n in node.input]
            sa, sb = shape_of(xs[0], node, i), shape_of(xs[1], node, i)
            if sa != sb:
                _fail(node, i, f"broadcasting add {sa} + {sb} is not supported")
            bottoms, coeffs = [], []
            for n in xs:
                if n in scaled and consumers[n] == 1:
                    src, s, mul_layer = scaled[n]
                    mul_layer.dead = True
                    bottoms.append(src)
                    coeffs.append(s)
                else:
                    bottoms.append(n)
                    coeffs.append(1.0)
            ep: dict[str, Any] = {"operation": "SUM"}
            if any(c != 1.0 for c in coeffs):
                ep["coeff"] = coeffs
            emit(_Layer(out, "Eltwise", bottoms, [out], {"eltwise_param": ep}))
            continue

        if op == "Concat":
            xs = [need_tensor(n, node, i) for n in node.input]
            rank = len(shape_of(xs[0], node, i))
            axis = int(at.get("axis", 1))
            axis = axis + rank if axis < 0 else axis
            emit(_Layer(out, "Concat", xs, [out], {"concat_param": {"axis": axis}}))
            continue

        if op == "Transpose":
            x = need_tensor(node.input[0], node, i)
            rank = len(shape_of(x, node, i))
            perm = [int(p) for p in at.get("perm", list(range(rank))[::-1])]
            emit(_Layer(out, "Permute", [x], [out], {"permute_param": {"order": perm}}))
            continue

        if op == "Reshape":
            x = need_tensor(node.input[0], node, i)
            if len(node.input) < 2 or node.input[1] not in consts:
                _fail(node, i, "the target shape must be a constant (run onnxsim)")
            dims = [int(d) for d in consts[node.input[1]].reshape(-1)]
            if int(at.get("allowzero", 0)) and 0 in dims:
                _fail(node, i, "allowzero=1 with a 0 in the shape has no Caffe equivalent")
            src = shape_of(x, node, i)
            dst = shape_of(out, node, i)
            # Keep the batch axis a copy (0) so the net also runs with N > 1.
            if dims and src[0] == 1 and dst[0] == 1 and dims[0] in (0, 1):
                dims[0] = 0
            emit(_Layer(out, "Reshape", [x], [out], {"reshape_param": {"shape": dims}}))
            continue

        if op == "Softmax":
            x = need_tensor(node.input[0], node, i)
            s = shape_of(x, node, i)
            rank = len(s)
            axis = int(at.get("axis", -1 if opset >= 13 else 1))
            axis = axis + rank if axis < 0 else axis
            if opset < 13 and any(d != 1 for d in s[axis + 1:]):
                _fail(node, i, f"opset-{opset} Softmax over flattened axes {axis}.. of {s} is not a Caffe Softmax")
            emit(_Layer(out, "Softmax", [x], [out], {"softmax_param": {"axis": axis}}))
            continue

        _fail(node, i)  # pragma: no cover - guarded by pass 1

    layers = [l for l in layers if not l.dead]
    out_shapes: dict[str, tuple[int, ...]] = {}
    for name in graph_outputs:
        if name not in producer or producer[name] is layers[0]:
            raise ZooError(f"caffe: graph output '{name}' is not produced by a mapped layer")
        if name not in shapes:
            raise ZooError(f"caffe: graph output '{name}' has no static shape")
        out_shapes[name] = shapes[name]
    if sorted(out_shapes) != ["boxes", "scores"]:
        raise ZooError(f"caffe: expected graph outputs 'scores' and 'boxes', found {graph_outputs}")

    if head == "decoded":
        _append_decoder(layers, in_shape, out_shapes)
    return layers, in_shape, out_shapes


def _append_decoder(layers: list[_Layer], in_shape: tuple[int, ...], out_shapes: dict[str, tuple[int, ...]]) -> None:
    """Decode raw `boxes` with priors into corners using standard Caffe layers."""

    _, _, h, w = in_shape
    priors = generate_priors(w, h).astype(np.float32)
    p = priors.shape[0]
    if out_shapes["boxes"] != (1, p, 4):
        raise ZooError(f"caffe: decoded head needs raw boxes of shape (1, {p}, 4) for a {w}x{h} input, "
                       f"got {out_shapes['boxes']}")
    producer = next(l for l in layers if "boxes" in l.top)
    producer.name = "boxes_raw"
    producer.top = ["boxes_raw"]
    cv, sv = np.float32(CENTER_VARIANCE), np.float32(SIZE_VARIANCE)
    ctr_scale = (priors[:, 2:] * cv).astype(np.float32)  # l * (var * prior_wh)
    ctr_bias = priors[:, :2].copy()
    size_scale = priors[:, 2:].copy()
    scale2d = {"axis": 1, "num_axes": 2}
    layers += [
        _Layer("boxes_split", "Slice", ["boxes_raw"], ["loc_xy", "loc_wh"],
               {"slice_param": {"axis": 2, "slice_point": [2]}}),
        _Layer("boxes_center", "Scale", ["loc_xy"], ["boxes_center"],
               {"scale_param": dict(scale2d, bias_term=True)}, [ctr_scale, ctr_bias]),
        _Layer("boxes_exp", "Exp", ["loc_wh"], ["boxes_exp"],
               {"exp_param": {"base": -1.0, "scale": float(sv), "shift": 0.0}}),
        _Layer("boxes_size", "Scale", ["boxes_exp"], ["boxes_size"],
               {"scale_param": dict(scale2d, bias_term=False)}, [size_scale]),
        _Layer("boxes_min", "Eltwise", ["boxes_center", "boxes_size"], ["boxes_min"],
               {"eltwise_param": {"operation": "SUM", "coeff": [1.0, -0.5]}}),
        _Layer("boxes_max", "Eltwise", ["boxes_center", "boxes_size"], ["boxes_max"],
               {"eltwise_param": {"operation": "SUM", "coeff": [1.0, 0.5]}}),
        _Layer("boxes", "Concat", ["boxes_min", "boxes_max"], ["boxes"], {"concat_param": {"axis": 2}}),
    ]


# --------------------------------------------------------------------------
# Protobuf serialisation


def _fill(msg: Any, values: dict[str, Any]) -> None:
    BlobShape = caffe_pb2.BlobShape

    for key, val in values.items():
        fd = msg.DESCRIPTOR.fields_by_name[key]
        if fd.message_type is not None and fd.message_type.name == "BlobShape":
            if isinstance(val, list) and val and isinstance(val[0], list):  # repeated BlobShape
                for dims in val:
                    getattr(msg, key).add().dim.extend(int(d) for d in dims)
            else:
                getattr(msg, key).CopyFrom(BlobShape(dim=[int(d) for d in val]))
        elif fd.enum_type is not None:
            setattr(msg, key, fd.enum_type.values_by_name[val].number)
        elif isinstance(val, list):
            getattr(msg, key).extend(val)
        else:
            setattr(msg, key, val)


def _to_protos(layers: list[_Layer], name: str) -> tuple[Any, Any]:

    text_net = caffe_pb2.NetParameter(name=name)
    bin_net = caffe_pb2.NetParameter(name=name)
    for l in layers:
        tl = text_net.layer.add(name=l.name, type=l.type)
        tl.bottom.extend(l.bottom)
        tl.top.extend(l.top)
        for pname, pvals in l.params.items():
            _fill(getattr(tl, pname), pvals)
        bl = bin_net.layer.add(name=l.name, type=l.type)
        bl.bottom.extend(l.bottom)
        bl.top.extend(l.top)
        for arr in l.blobs:
            blob = bl.blobs.add()
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            blob.shape.dim.extend(int(d) for d in arr.shape)
            blob.data.extend(arr.reshape(-1).tolist())
    return text_net, bin_net


# --------------------------------------------------------------------------
# Public API


def _load(onnx_path: str | os.PathLike[str]) -> Any:
    import onnx  # heavy: imported when used

    p = Path(onnx_path)
    if not p.is_file():
        raise ZooError(f"caffe: ONNX file not found: {p}")
    try:
        return onnx.load(str(p))
    except Exception as exc:
        raise ZooError(f"caffe: cannot read ONNX file {p}: {exc}") from exc


def check_supported(model: Any, *, head: str = "raw") -> None:
    """Raise ZooError unless every node of `model` (an onnx.ModelProto) maps to Caffe.

    The first check is by op type (message names the op type and node and lists
    the supported ops); then the whole translation is dry-run in memory, so
    unsupported attributes (asymmetric pads, non-constant shapes, ...) are
    reported too. Writes nothing.
    """
    _build(model, head)


def onnx_to_caffe(
    onnx_path: str | os.PathLike[str],
    prototxt_out: str | os.PathLike[str],
    caffemodel_out: str | os.PathLike[str],
    *,
    name: str = "ultraface",
    head: str = "raw",
) -> dict[str, Any]:
    """Convert our ONNX graph to a Caffe .prototxt (text) and .caffemodel (binary).

    Both files are written atomically (zoo.core.fsutil); on any failure neither file is left behind. Returns a summary:
    ``prototxt``, ``caffemodel`` (paths), ``input_shape``, ``output_shapes``,
    ``layer_counts`` (Caffe type -> count), ``num_params``, ``head``, ``seconds``.
    """
    from google.protobuf import text_format  # optional runtime (caffe extra)

    t0 = time.perf_counter()
    model = _load(onnx_path)
    layers, in_shape, out_shapes = _build(model, head)
    text_net, bin_net = _to_protos(layers, name)
    header = (f"# {name}: Caffe network written by ultraface-zoo from an ONNX graph "
              f"(input 1x{in_shape[1]}x{in_shape[2]}x{in_shape[3]}, head {head}).\n")
    text_bytes = (header + text_format.MessageToString(text_net)).encode("utf-8")
    bin_bytes = bin_net.SerializeToString(deterministic=True)

    targets = [(Path(prototxt_out), text_bytes), (Path(caffemodel_out), bin_bytes)]
    if targets[0][0].resolve() == targets[1][0].resolve():
        raise ZooError("caffe: prototxt and caffemodel outputs must be different files")
    for path, _ in targets:
        if not path.parent.is_dir():
            raise ZooError(f"caffe: output folder does not exist: {path.parent}")
    written: list[Path] = []
    try:
        for path, data in targets:
            atomic_write_bytes(path, data)
            written.append(path)
    except BaseException:
        for path in written:  # never one file of the pair without the other
            path.unlink(missing_ok=True)
        raise

    return {
        "prototxt": str(targets[0][0]),
        "caffemodel": str(targets[1][0]),
        "input_shape": list(in_shape),
        "output_shapes": {k: list(v) for k, v in sorted(out_shapes.items())},
        "layer_counts": dict(sorted(Counter(l.type for l in layers).items())),
        "num_params": int(sum(b.size for l in layers for b in l.blobs)),
        "head": head,
        "seconds": time.perf_counter() - t0,
    }
