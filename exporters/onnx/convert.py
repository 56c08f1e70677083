"""ONNX conversion: torch.onnx (TorchScript exporter), onnxsim, BatchNorm folded, metadata inside.

Why the TorchScript exporter (``dynamo=False``): it writes one self-contained
file in ~1 s, folds BatchNorm into the convolutions in eval mode, and needs no
onnxscript; the dynamo exporter takes ~15 s here and writes external data by
default, which every downstream converter would then have to chase.

The folded weights are then recomputed here in float64 (`refold_batchnorm`) and rounded once to
float32 (float16 for the fp16 file): torch.onnx folds in float32 with torch kernels that MKL picks
by the build CPU (torch.sqrt, as issue 38 traced it), so its folded weights differed in the last
bits with MKL's AVX2 path on an AVX-512 machine (19 of rfb-320's 111 initializers, up to 3 ulp,
2.4e-7), and were not correctly rounded on either path. NumPy's float64
``+ - * / sqrt`` are correctly rounded IEEE operations, one ufunc at a time (no fused
multiply-add), so these bytes no longer depend on the CPU that builds them. Every converter
that reads our ONNX (MNN, ncnn, OpenVINO, Caffe) inherits them; TFLite folds the same way
from the checkpoint (exporters/tflite/network.py), so both carry the same float32 weights.
"""
from __future__ import annotations

import io
import json

import numpy as np

from zoo.exporters.onnx.quiet import import_onnxruntime
from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta
from zoo.core.model.layers import onnx_module_name

OPSET = 13
INPUT_NAME = "input"
OUTPUT_NAMES = ("scores", "boxes")
#: the free axes of a dynamic file (`zoo export --dynamic`)
DYNAMIC_AXES = {INPUT_NAME: {0: "N", 2: "H", 3: "W"}, "scores": {0: "N", 1: "P"}, "boxes": {0: "N", 1: "P"}}


def build_onnx(state_dict: dict, meta: ArtifactMeta, simplify: bool = True, folded: dict | None = None):
    """Our fp32 ONNX model (batch 1) for ``meta.head``, simplified, metadata embedded. A dynamic
    ``meta`` (raw head) gets free axes: input (N, 3, H, W), outputs (N, P, .). The BatchNorm-folded
    weights are exact float64 folds rounded once (`refold_batchnorm`); ``folded``, when given, is
    filled with them in float64 by initializer name (for `to_fp16`'s one rounding to float16)."""
    import onnx  # heavy: deferred so `zoo list` stays fast
    import torch  # heavy

    from zoo.core.model.nets import UltraFace, load_state_dict_strict  # heavy: torch

    w, h = meta.input_size
    net = UltraFace(meta.arch, meta.num_classes, w, h, head=meta.head)
    load_state_dict_strict(net, state_dict)
    net.eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, h, w),),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
            dynamic_axes=DYNAMIC_AXES if meta.is_dynamic else None,
        )
    model = onnx.load_from_string(buf.getvalue())
    if simplify:
        import onnxsim  # heavy

        model, ok = onnxsim.simplify(model)
        if not ok:
            raise ZooError("onnxsim could not validate the simplified ONNX graph")
    leftover = [n.name for n in model.graph.node if n.op_type == "BatchNormalization"]
    if leftover:
        raise ZooError(f"BatchNorm was not folded into the convolutions: {leftover[:3]}")
    exact = refold_batchnorm(model, net)
    if folded is not None:
        folded.update(exact)
    embed_metadata(model, meta)
    return model


#: how far torch.onnx's float32 fold may be from the exact one before we call the pairing wrong
#: (it differs by 1-3 ulp; a wrong convolution/BatchNorm pairing differs by orders of magnitude)
FOLD_RTOL, FOLD_ATOL = 1e-5, 1e-6


def conv_bn_pairs(net) -> dict[str, tuple[str, object, object]]:
    """Every Conv2d followed by a BatchNorm2d in the same container (``Sequential(conv, bn, relu)``,
    ``BasicConv.conv``/``.bn``): conv module path -> (BatchNorm path, conv module, BatchNorm module)."""
    from torch import nn  # heavy

    pairs = {}
    for prefix, parent in net.named_modules():
        kids = list(parent.named_children())
        for (cn, conv), (bn_name, bn) in zip(kids, kids[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                p = f"{prefix}." if prefix else ""
                pairs[p + cn] = (p + bn_name, conv, bn)
    return pairs


def fold_f64(conv, bn) -> tuple[np.ndarray, np.ndarray]:
    """The exact fold of ``bn`` into ``conv``, in float64: W * s, (b - mean) * s + beta with
    s = gamma / sqrt(var + eps); each step a correctly rounded float64 operation (the same formula
    as exporters/tflite/network.py)."""
    def f64(t):
        return t.detach().cpu().numpy().astype(np.float64)

    w = f64(conv.weight)
    b = f64(conv.bias) if conv.bias is not None else np.zeros(w.shape[0], np.float64)
    gamma, beta, mean, var = f64(bn.weight), f64(bn.bias), f64(bn.running_mean), f64(bn.running_var)
    scale = gamma / np.sqrt(var + float(bn.eps))
    return w * scale[:, None, None, None], (b - mean) * scale + beta


def refold_batchnorm(model, net) -> dict[str, np.ndarray]:
    """Replace the weights and biases torch.onnx folded (in float32, on the build CPU's kernels)
    with the exact float64 fold of the same PyTorch modules, rounded once to float32. Each folded
    Conv node is found by its scope name; every BatchNorm of ``net`` must map to exactly one Conv
    node, and torch's fold must agree with ours to ~1e-5 (else the pairing is wrong: an error, never
    a silent swap). Returns {initializer name: float64 array} of the replaced tensors."""
    from onnx import numpy_helper  # heavy

    pairs = conv_bn_pairs(net)
    inits = {t.name: t for t in model.graph.initializer}
    users: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    exact, seen = {}, {}
    for node in model.graph.node:
        module = onnx_module_name(node.name) if node.op_type == "Conv" else None
        if module not in pairs:
            continue
        bn_name, conv, bn = pairs[module]
        if module in seen:
            raise ZooError(f"BatchNorm {bn_name!r} folds into two ONNX Conv nodes ({seen[module]!r}, {node.name!r})")
        seen[module] = node.name
        if len(node.input) < 3 or any(i not in inits or users[i] != 1 for i in node.input[1:3]):
            raise ZooError(f"ONNX Conv node {node.name!r} ({module}) has no private folded weight and bias")
        for name, value in zip(node.input[1:3], fold_f64(conv, bn)):
            t = inits[name]
            old = numpy_helper.to_array(t)
            if old.shape != value.shape or not np.allclose(old, value, rtol=FOLD_RTOL, atol=FOLD_ATOL):
                raise ZooError(f"ONNX initializer {name!r} of {node.name!r} is not the fold of {module} and {bn_name}")
            t.CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
            exact[name] = value
    missing = sorted(set(pairs) - set(seen))
    if missing:
        raise ZooError(f"no ONNX Conv node found for the BatchNorm-folded convolution(s) {missing[:3]}")
    return exact


def add_nms(model, num_classes: int, score_threshold: float = 0.7, iou_threshold: float = 0.3, max_per_class: int = 200):
    """End-to-end graph: a decoded graph plus ONNX NonMaxSuppression; one output ``detections``
    (M, 6) = x1, y1, x2, y2 (normalised), score, class id (1..K-1), per class by decreasing score."""
    import onnx  # heavy
    from onnx import TensorProto, helper, numpy_helper  # heavy

    g = model.graph
    consts = {
        "nms_max": np.array([max_per_class], np.int64), "nms_iou": np.array([iou_threshold], np.float32),
        "nms_score": np.array([score_threshold], np.float32), "nms_one": np.array([1], np.int64),
        "nms_k": np.array([num_classes], np.int64), "nms_ax1": np.array([1], np.int64), "nms_ax0": np.array([0], np.int64),
        "nms_c1": np.array(1, np.int64), "nms_c2": np.array(2, np.int64),
    }
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    n = helper.make_node
    g.node.extend([
        n("Transpose", ["scores"], ["nms_t"], perm=[0, 2, 1], name="nms_transpose"),
        n("Slice", ["nms_t", "nms_one", "nms_k", "nms_ax1"], ["nms_fg"], name="nms_foreground"),
        n("NonMaxSuppression", ["boxes", "nms_fg", "nms_max", "nms_iou", "nms_score"], ["nms_sel"], name="nms"),
        n("Gather", ["nms_sel", "nms_c1"], ["nms_cls0"], axis=1, name="nms_class"),
        n("Gather", ["nms_sel", "nms_c2"], ["nms_idx"], axis=1, name="nms_index"),
        n("Squeeze", ["boxes", "nms_ax0"], ["nms_boxes2d"], name="nms_squeeze"),
        n("Gather", ["nms_boxes2d", "nms_idx"], ["nms_box"], axis=0, name="nms_gather_boxes"),
        n("GatherND", ["nms_fg", "nms_sel"], ["nms_score_v"], name="nms_gather_scores"),
        n("Add", ["nms_cls0", "nms_one"], ["nms_cls"], name="nms_class_id"),
        n("Cast", ["nms_cls"], ["nms_cls_f"], to=TensorProto.FLOAT, name="nms_class_float"),
        n("Unsqueeze", ["nms_score_v", "nms_ax1"], ["nms_score_c"], name="nms_score_col"),
        n("Unsqueeze", ["nms_cls_f", "nms_ax1"], ["nms_cls_c"], name="nms_class_col"),
        n("Concat", ["nms_box", "nms_score_c", "nms_cls_c"], ["detections"], axis=1, name="nms_detections"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["M", 6]))
    onnx.checker.check_model(model)
    return model


def embed_metadata(model, meta: ArtifactMeta) -> None:
    del model.metadata_props[:]
    d = meta.to_dict()
    props = {
        "zoo.meta": meta.to_json(),
        "model_id": meta.model_id,
        "arch": meta.arch,
        "input_size": f"{meta.input_size[0]}x{meta.input_size[1]}",
        "labels": ",".join(meta.labels),
        "mean": str(meta.mean),
        "std": str(meta.std),
        "head": meta.head,
        "variances": json.dumps(d["variances"]),
        "prior_count": str(meta.prior_count),
        "checkpoint_sha256": meta.checkpoint_sha256,
        "zoo_version": meta.zoo_version,
    }
    for k in sorted(props):
        p = model.metadata_props.add()
        p.key, p.value = k, props[k]
    model.producer_name = "ultraface-zoo"
    model.doc_string = f"UltraFace {meta.arch} {meta.model_id} ({meta.head} head), exported by ultraface-zoo"


def to_fp16(model, exact: dict | None = None):
    """float16 weights and arithmetic, float32 inputs and outputs. ``exact`` ({initializer name:
    float64 array}, from `build_onnx`'s ``folded``): those tensors are rounded once, from float64
    to float16, not through their float32 rounding (same clipping to float16's range)."""
    import_onnxruntime()
    from onnx import numpy_helper  # heavy
    from onnxruntime.transformers.float16 import convert_float_to_float16, convert_np_to_float16  # heavy

    model = topo_sort(convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False))
    for t in model.graph.initializer:
        if exact and t.name in exact:
            value = convert_np_to_float16(exact[t.name]).astype(np.float16)
            if numpy_helper.to_array(t).dtype != np.float16:
                raise ZooError(f"ONNX initializer {t.name!r} was not converted to float16")
            t.CopyFrom(numpy_helper.from_array(value, t.name))
    return model


def topo_sort(model):
    """Reorder graph nodes so each comes after the producers of its inputs (the fp16 pass leaves IO casts out of order)."""
    g = model.graph
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        progressed = False
        for n in list(pending):
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
                pending.remove(n)
                progressed = True
        if not progressed:
            raise ZooError(f"ONNX graph has a cycle or a dangling input near node {pending[0].name!r}")
    del g.node[:]
    g.node.extend(ordered)
    return model
