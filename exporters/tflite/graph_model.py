"""The TF.js graph-model format, written by us from the NHWC TensorFlow network (no `tensorflowjs`).

A graph model is two files: ``<stem>.model.json`` (the frozen GraphDef as protobuf JSON with the
constants' values taken out, a weights manifest saying which bytes of the shard hold which constant,
the serving signature and our metadata under ``userDefinedMetadata``) and one weight shard
``<stem>.bin`` (the constants' bytes, in manifest order). TF.js reads it with ``tf.loadGraphModel``
(over HTTP) or ``tf.io.fromMemory`` (the Node worker).

Why not the ``tensorflowjs`` converter: 4.22.0 (its latest release) cannot be installed beside the
project's TensorFlow (it pins ``packaging~=23.1``, ``tensorflow<3`` (not tensorflow-cpu), TF Decision
Forests, jax and flax; measured in the closing note of issue 34), and the format is small.

What we write:
- the graph of the SavedModel's serving signature (the saved_model target's file, written for the
  occasion), frozen (our weights are constants already), its input and outputs named ``input``,
  ``scores`` and ``boxes``;
- each Conv2D / DepthwiseConv2dNative followed by its BiasAdd (and a Relu) fused into one
  ``_FusedConv2D`` / ``FusedDepthwiseConv2dNative`` node (TF.js has both kernels; what the
  tensorflowjs converter does through grappler's remapper), named after the last op it replaces;
- the weights as float32 (``fp32``), as float16 (``fp16``: every float constant, TF.js's float16
  quantization), or the convolution kernels as uint8 (``uint8-weight``: TF.js's uint8 quantization,
  ``value = q * scale + min`` per weight entry, of each kernel divided by its per-output-channel
  scale, which a float32 constant and a ``Mul`` put back: `per_channel_kernels`; biases and the
  decoded head's priors stay float32). Both are storage only: TF.js turns them back into float32 on
  load and computes in float.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from zoo.core.errors import ZooError
from zoo.exporters.tflite.network import SIGNATURE_KEY

FORMAT = "graph-model"
#: the weight encodings of the flavours: precision flavour -> (float16 every float, uint8 the kernels)
ENCODINGS = {"fp32": "float32", "fp16": "float16", "uint8-weight": "uint8"}
INPUT = "input"
OUTPUTS = ("scores", "boxes")
_CONVS = {"Conv2D": "_FusedConv2D", "DepthwiseConv2dNative": "FusedDepthwiseConv2dNative"}


def frozen_graph_def(saved_model_dir: Path):
    """The serving signature of our SavedModel (zoo.exporters.tflite.saved_model) as one frozen GraphDef
    (function calls inlined) whose placeholder is ``input`` and whose outputs are the nodes ``scores`` and
    ``boxes``."""
    import tensorflow as tf  # heavy: imported when used
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # heavy

    try:
        fn = tf.saved_model.load(str(saved_model_dir)).signatures[SIGNATURE_KEY]
    except Exception as e:  # noqa: BLE001 - TF raises many types
        raise ZooError(f"cannot load the SavedModel {saved_model_dir}: {str(e).splitlines()[0][:200]}") from None
    frozen = convert_variables_to_constants_v2(fn)
    gd = frozen.graph.as_graph_def()
    # the flat outputs follow the structured outputs' sorted keys
    keys = sorted(fn.structured_outputs)
    names = {t.name.split(":")[0]: key for t, key in zip(frozen.outputs, keys)}
    inputs = [t.name.split(":")[0] for t in frozen.inputs]
    if sorted(keys) != sorted(OUTPUTS) or len(inputs) != 1:
        raise ZooError(f"unexpected signature: inputs {inputs}, outputs {keys}")
    names[inputs[0]] = INPUT
    taken = {n.name for n in gd.node} - set(names)
    clash = taken & set(names.values())
    if clash:
        raise ZooError(f"the graph already has a node named {sorted(clash)[0]!r}")
    for n in gd.node:
        if n.name in names:
            n.name = names[n.name]
        n.input[:] = [_renamed(i, names) for i in n.input]
    del gd.library.function[:]
    return gd, tf


def _renamed(ref: str, names: dict) -> str:
    ctrl = ref.startswith("^")
    base, sep, port = ref.lstrip("^").partition(":")
    return ("^" if ctrl else "") + names.get(base, base) + sep + port


def fuse_convolutions(gd) -> int:
    """Fold Conv + BiasAdd (+ Relu) chains into TF's fused convolution nodes, in place; how many."""
    nodes = list(gd.node)
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i.lstrip("^").split(":")[0], []).append(n)
    by_name = {n.name: n for n in nodes}
    drop: set[str] = set()
    fused = 0
    for n in nodes:
        if n.op not in _CONVS:
            continue
        after = consumers.get(n.name, [])
        if len(after) != 1 or after[0].op != "BiasAdd" or after[0].input[0] != n.name:
            continue
        bias = after[0]
        chain = [bias]
        nxt = consumers.get(bias.name, [])
        if len(nxt) == 1 and nxt[0].op == "Relu" and nxt[0].name not in OUTPUTS:
            chain.append(nxt[0])
        last = chain[-1]
        f = type(n)()
        f.CopyFrom(n)
        f.op = _CONVS[n.op]
        f.name = last.name
        f.input.append(bias.input[1])
        f.attr["num_args"].i = 1
        f.attr["fused_ops"].list.s.extend([c.op.encode() for c in chain])
        if n.op == "Conv2D":
            f.attr["epsilon"].f = 0.0
            f.attr["leakyrelu_alpha"].f = 0.2
        by_name[last.name] = f
        drop.update({n.name} | {c.name for c in chain[:-1]})
        fused += 1
    kept = [by_name[n.name] for n in nodes if n.name not in drop]
    del gd.node[:]
    gd.node.extend(kept)
    return fused


def _kernel_inputs(gd) -> set[str]:
    """The constants a convolution reads as its filter."""
    return {n.input[1].split(":")[0] for n in gd.node if n.op in _CONVS or n.op in _CONVS.values()}


_CLEARED = ("tensor_content", "half_val", "float_val", "double_val", "int_val", "string_val", "int64_val",
            "bool_val", "uint32_val", "uint64_val")


#: suffixes of the nodes `per_channel_kernels` adds beside a kernel constant
SCALE_SUFFIX, DEQUANT_SUFFIX = "/channel_scale", "/per_channel"


def per_channel_kernels(gd, float_kept=(), score_head: set[str] | None = None) -> set[str]:
    """uint8-weight: give each convolution kernel one range per output channel, in place; the kernel constants'
    names (what `extract_weights` stores as uint8).

    TF.js's uint8 quantization has one affine range per weight entry. One range over a whole kernel (the
    folded batch norms leave channels whose weights differ in size by 100x) rounds the small channels away
    (issue 29's strict tier failed three of four checkpoints). So each kernel ``K`` is stored as ``K / s``,
    ``s`` the largest |weight| of each output channel (a Conv2D's last axis; a depthwise kernel's (in,
    multiplier) pair), which spans the uint8 range in every channel, and the graph multiplies it back: a
    float32 constant ``K/channel_scale`` and a ``Mul`` node ``K/per_channel`` that the convolution reads.
    Still float compute: the Mul runs on the weights, once per inference.

    Kept float32: the score head's own kernels (``score_head``, default `score_head_kernels`), and ``float_kept``: PyTorch module
    names (the int8 sensitivity analysis every target shares), matched on a component of the constant's
    name (``.../base_net.1.0/Const``)."""
    from tensorflow.python.framework import tensor_util  # heavy: part of tensorflow

    by_name = {n.name: n for n in gd.node}
    taken = set(by_name)
    done: set[str] = set()
    score_head = score_head_kernels(gd) if score_head is None else score_head
    for conv in list(gd.node):
        if conv.op not in _CONVS and conv.op not in _CONVS.values():
            continue
        name = conv.input[1].split(":")[0]
        if name not in done:
            const = by_name.get(name)
            if (const is None or const.op != "Const" or name in score_head
                    or set(name.split("/")) & set(float_kept)):
                continue
            value = np.asarray(tensor_util.MakeNdarray(const.attr["value"].tensor))
            if value.dtype != np.float32 or value.ndim != 4:
                continue
            depthwise = conv.op in ("DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
            axes = (0, 1) if depthwise else (0, 1, 2)
            s = np.abs(value.astype(np.float64)).max(axis=axes, keepdims=True)
            s[s == 0] = 1.0
            scale_name, mul_name = name + SCALE_SUFFIX, name + DEQUANT_SUFFIX
            if {scale_name, mul_name} & taken:
                raise ZooError(f"the graph already has a node named {scale_name!r} or {mul_name!r}")
            taken |= {scale_name, mul_name}
            const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto((value / s).astype(np.float32)))
            scale = gd.node.add()
            scale.name, scale.op = scale_name, "Const"
            scale.attr["dtype"].type = const.attr["dtype"].type
            scale.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(s.astype(np.float32)))
            mul = gd.node.add()
            mul.name, mul.op = mul_name, "Mul"
            mul.input.extend([name, scale_name])
            mul.attr["T"].type = const.attr["dtype"].type
            done.add(name)
        conv.input[1] = name + DEQUANT_SUFFIX
    return done


def _ancestors(by_name: dict, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        n = by_name.get(todo.pop())
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        todo.extend(i.lstrip("^").split(":")[0] for i in n.input)
    return seen


def score_head_kernels(gd) -> set[str]:
    """The kernel constants only ``scores`` depends on (not ``boxes``): the classification head's own
    convolutions, found in the graph, whatever the architecture. uint8-weight keeps them float32: the strict
    tier thresholds the scores at 0.7, where a rounding of the last layers moves a borderline face across
    (measured on rfb-320: per-channel uint8 everywhere kept 291/291 but 3 extra, 1.03%; the score head float,
    7% of the weights, 1 extra)."""
    by_name = {n.name: n for n in gd.node}
    only = _ancestors(by_name, OUTPUTS[0]) - _ancestors(by_name, OUTPUTS[1])
    return {by_name[n].input[1].split(":")[0] for n in only
            if by_name[n].op in _CONVS or by_name[n].op in _CONVS.values()}


def _uint8(w: np.ndarray) -> tuple[np.ndarray, dict]:
    lo, hi = float(w.min()), float(w.max())
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    q = np.clip(np.round((w.astype(np.float64) - lo) / scale), 0, 255).astype(np.uint8)
    return q, {"dtype": "uint8", "min": lo, "scale": scale}


def extract_weights(gd, encoding: str, kernels: set[str] | None = None) -> tuple[list[dict], bytes, dict]:
    """Take every Const's value out of ``gd`` (in place): (weight specs, the shard's bytes, a summary).
    ``kernels``: the constants stored as uint8 (default: what the convolutions read as their filter)."""
    from tensorflow.python.framework import tensor_util  # heavy: part of tensorflow

    if encoding not in ENCODINGS.values():
        raise ZooError(f"unknown weight encoding {encoding!r}")
    kernels = _kernel_inputs(gd) if kernels is None else kernels
    specs, chunks = [], []
    summary = {"float32": 0, "float16": 0, "uint8": 0, "int32": 0}
    for n in gd.node:
        if n.op != "Const":
            continue
        value = np.asarray(tensor_util.MakeNdarray(n.attr["value"].tensor))
        spec: dict = {"name": n.name, "shape": [int(s) for s in value.shape]}
        if value.dtype == np.float32:
            spec["dtype"] = "float32"
            if encoding == "float16":
                data = value.astype("<f2").tobytes()
                spec["quantization"] = {"dtype": "float16"}
                summary["float16"] += value.size
            elif encoding == "uint8" and n.name in kernels:
                q, spec["quantization"] = _uint8(value)
                data = q.tobytes()
                summary["uint8"] += value.size
            else:
                data = value.astype("<f4").tobytes()
                summary["float32"] += value.size
        elif value.dtype == np.int32:
            spec["dtype"] = "int32"
            data = value.astype("<i4").tobytes()
            summary["int32"] += value.size
        else:
            raise ZooError(f"constant {n.name!r} has dtype {value.dtype}, which the graph model does not carry")
        specs.append(spec)
        chunks.append(data)
        t = n.attr["value"].tensor
        for field in _CLEARED:
            t.ClearField(field)
    return specs, b"".join(chunks), summary


def _signature(gd) -> dict:
    by_name = {n.name: n for n in gd.node}
    shape = by_name[INPUT].attr["shape"].shape
    dims = [{"size": str(d.size)} for d in shape.dim]
    return {"inputs": {INPUT: {"name": f"{INPUT}:0", "dtype": "DT_FLOAT", "tensorShape": {"dim": dims}}},
            "outputs": {o: {"name": f"{o}:0", "dtype": "DT_FLOAT"} for o in OUTPUTS}}


def graph_model(saved_model_dir: Path, precision: str, shard: str, float_kept=()) -> tuple[dict, bytes, dict]:
    """(model.json as a dict, the shard's bytes, what was written) for our SavedModel at ``precision`` (a
    flavour of ENCODINGS); ``shard``: the shard's file name as model.json names it (beside it). The
    caller adds its metadata (``userDefinedMetadata``) and writes the text with `dump`. ``float_kept``
    (uint8-weight): the modules whose kernels stay float32 (`per_channel_kernels`)."""
    if precision not in ENCODINGS:
        raise ZooError(f"the tfjs target has no flavour {precision!r} (it has {', '.join(ENCODINGS)})")
    from google.protobuf import json_format  # heavy: part of tensorflow's protobuf

    gd, tf = frozen_graph_def(saved_model_dir)
    fused = fuse_convolutions(gd)
    uint8 = ENCODINGS[precision] == "uint8"
    score_head = score_head_kernels(gd) if uint8 else set()
    kernels = per_channel_kernels(gd, float_kept, score_head) if uint8 else None
    specs, data, summary = extract_weights(gd, ENCODINGS[precision], kernels)
    doc = {
        "format": FORMAT,
        "generatedBy": tf.__version__,
        "convertedBy": "ultraface-zoo",
        "modelTopology": json_format.MessageToDict(gd),
        "signature": _signature(gd),
        "weightsManifest": [{"paths": [shard], "weights": specs}],
    }
    info = {"format": FORMAT, "fused_convolutions": fused, "weights": summary, "nodes": len(gd.node),
            "uint8_kernels": sorted(kernels or ()),
            "score_head_float": sorted(score_head)}
    return doc, data, info


def dump(doc: dict) -> bytes:
    """model.json's bytes: compact, keys sorted (the same model gives the same bytes)."""
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


# --------------------------------------------------------------------------- reading (every file is input)

MAX_MODEL_JSON = 64 << 20  # bytes: ours are ~70 kB
_BYTES = {"float32": 4, "int32": 4, "float16": 2, "uint8": 1}
META_KEY = "ultraface_zoo"  # our metadata in userDefinedMetadata


def _load_json(path: Path) -> dict:
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_JSON:
            raise ZooError(f"{path} is {size} bytes: not a TF.js model.json of ours (at most {MAX_MODEL_JSON})")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ZooError(f"TF.js model not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read the TF.js model {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ZooError(f"{path} is not valid JSON (truncated or damaged: "
                       f"{str(e).splitlines()[0][:100] if str(e) else type(e).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("modelTopology"), dict):
        raise ZooError(f"{path} is not a TF.js graph model (no format {FORMAT!r} with a modelTopology)")
    return doc


def embedded_meta(path: Path) -> dict | None:
    """Our metadata as model.json carries it (``userDefinedMetadata``), or None."""
    meta = (_load_json(Path(path)).get("userDefinedMetadata") or {})
    return meta.get(META_KEY) if isinstance(meta, dict) else None


def _spec_bytes(spec, path: Path) -> int:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ZooError(f"{path}: a weights manifest entry is not an object with a name")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 31
                                              for d in shape):
        raise ZooError(f"{path}: weight {spec['name'][:80]!r} has a bad shape {str(shape)[:60]}")
    q = spec.get("quantization")
    dtype = q.get("dtype") if isinstance(q, dict) else spec.get("dtype")
    if dtype not in _BYTES:
        raise ZooError(f"{path}: weight {spec['name'][:80]!r} has dtype {str(dtype)[:20]!r}, which TF.js graph models of ours do not use")
    return int(np.prod(shape, dtype=np.float64)) * _BYTES[dtype]


def read_graph_model(path: Path) -> tuple[bytes, bytes]:
    """(model.json bytes, its weight shard's bytes), each checked against the other: one weight group with
    one shard, a plain file name beside model.json, whose size is what the manifest's weights need."""
    path = Path(path)
    doc = _load_json(path)
    groups = doc.get("weightsManifest")
    if not (isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)
            and isinstance(groups[0].get("paths"), list) and len(groups[0]["paths"]) == 1
            and isinstance(groups[0].get("weights"), list)):
        raise ZooError(f"{path}: the weights manifest is not one group with one shard (not a model.json of ours)")
    name = groups[0]["paths"][0]
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise ZooError(f"{path}: the weight shard {str(name)[:80]!r} is not a file name beside it; refusing it")
    need = sum(_spec_bytes(s, path) for s in groups[0]["weights"])
    shard = path.parent / name
    if not shard.is_file():
        raise ZooError(f"the weight shard {shard} named by {path.name} is missing: copy it beside {path.name}")
    size = shard.stat().st_size
    if size != need:
        raise ZooError(f"the weight shard {shard} is {size} bytes, but {path.name} describes {need}: "
                       f"a truncated shard or one of another model")
    return path.read_bytes(), shard.read_bytes()
