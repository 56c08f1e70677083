"""ONNX -> OpenVINO IR (.xml + .bin) with ``openvino.convert_model`` / ``openvino.save_model``; the
artifact metadata in the IR's ``rt_info``.

Facts this module depends on (OpenVINO 2026.4, measured):

* ``convert_model`` copies the ONNX file's metadata_props into ``rt_info["framework"]``: those of
  our fp32 ONNX (``zoo.meta`` saying target onnx, precision fp32) would contradict the IR's own, so
  that section is dropped and ours written under ``rt_info["ultraface_zoo"]["meta"]``.
* ``save_model`` records the source as ``DIR/<file name>`` and the OpenVINO version: saving the
  same model twice gives the same bytes.
* A Conv node with a bias becomes ``Convolution`` named ``<node>/WithoutBiases`` plus an ``Add``
  named ``<node>``; NNCF's ignored scope names the ``Convolution``.
* ``save_model`` already writes one copy of identical constant data in the .bin, but every ``Const``
  layer stays in the .xml with its name, shape and ports, indented with tabs. The .xml of the int8 IR
  (NNCF's FakeQuantize layers, four ``Const`` inputs each, and its weight decompression
  ``Const i8 -> Convert -> Multiply``) is nearly twice that of the fp32 one, so `compact` (every
  precision alike) writes the same graph in fewer bytes; measured on every model, outputs identical.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from zoo.exporters.openvino.quiet import import_openvino
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes
from zoo.core.meta import ArtifactMeta

#: where the metadata JSON lives in the IR's rt_info
META_PATH = ["ultraface_zoo", "meta"]
#: rt_info sections of the converted ONNX that are not ours to publish
DROPPED_RT_INFO = ("framework",)
CONV_TYPES = ("Convolution", "GroupConvolution")
#: `compact` with ``f16_float_weights``: a float convolution weight of at least this many values is
#: stored as f16 (2 bytes a value saved) behind a ``Convert`` to f32 (~0.35 KB more of .xml, so
#: smaller weights would grow the IR; measured on rfb-320 int8: 128 -> 44.02%, 256 -> 44.01%,
#: 512 -> 44.10%, 1024 -> 44.37% of the fp32 IR)
F16_MIN_VALUES = 256


def onnx_to_ov(onnx_path: Path):
    """Our ONNX as an ``openvino.Model`` (fp32), without the ONNX file's metadata."""
    ov = import_openvino()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ZooError(f"the ONNX source {onnx_path} does not exist")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as e:  # noqa: BLE001 - the converter raises many types
        raise ZooError(f"openvino.convert_model cannot convert {onnx_path.name}: {str(e).strip().splitlines()[0][:200]}") from None
    rt = model.get_rt_info()
    for key in DROPPED_RT_INFO:
        if key in rt.keys():
            del rt[key]
    return model


def embed_metadata(model, meta: ArtifactMeta) -> None:
    model.set_rt_info(meta.to_json(), META_PATH)


def embedded_metadata(model) -> dict | None:
    """The metadata dict in a model's rt_info (None when absent)."""
    if not model.has_rt_info(META_PATH):
        return None
    text = model.get_rt_info(META_PATH).astype(str)
    try:
        d = json.loads(text)
    except ValueError:
        raise ZooError("the metadata in the IR's rt_info is not valid JSON") from None
    return d if isinstance(d, dict) else None


def constant_only_ops(model) -> list:
    """The operations of ``model`` computed from constants alone, constants included, in the model's
    order (weights and their decompression: NNCF's ``Const i8 -> Convert -> Multiply``). `zoo diff`
    (``OpenvinoTap``) skips exactly these."""
    const: set[int] = set()
    out = []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Parameter", "Result"):
            continue
        if kind == "Constant" or all(i.get_source_output().get_node().get_instance_id() in const for i in op.inputs()):
            const.add(op.get_instance_id())
            out.append(op)
    return out


def compact(model, f16_float_weights: bool = False) -> dict[str, int]:
    """Rewrite ``model`` in place to the same graph in fewer IR bytes; return what was done.

    * constants with the same element type, shape and bytes become one (their consumers rewired to
      the first): NNCF's FakeQuantize has input_low == output_low and input_high == output_high;
    * the operations computed from constants alone are named ``c0``, ``c1``, ... in the model's
      order (deterministic, unlike convert_model's process-counter names such as ``Reshape_15``)
      and their tensor names (ONNX initializer names) cleared. Every other operation keeps its name
      and its tensor names: the ONNX tensor names that `zoo diff` maps by;
    * with ``f16_float_weights`` (int8), an f32 constant read directly as a convolution's weights
      (the layers kept float) is stored as f16 followed by a ``Convert`` to f32, when it holds at
      least ``F16_MIN_VALUES`` values. The one step that changes numbers: the weights are rounded
      to fp16, as in the fp16 IR; the convolution still computes in f32."""
    ov = import_openvino()
    seen, merged = {}, 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        key = (op.get_output_element_type(0).get_type_name(), tuple(op.get_output_shape(0)),
               hashlib.sha256(np.ascontiguousarray(op.get_data()).tobytes()).hexdigest())
        first = seen.setdefault(key, op)
        if first is not op:
            for target in list(op.output(0).get_target_inputs()):
                target.replace_source_output(first.output(0))
            merged += 1
    halved = 0
    if f16_float_weights:
        for op in model.get_ordered_ops():
            if op.get_type_name() not in CONV_TYPES:
                continue
            w = op.input_value(1).get_node()
            if (w.get_type_name() == "Constant" and w.get_output_element_type(0) == ov.Type.f32
                    and int(np.prod(w.get_output_shape(0))) >= F16_MIN_VALUES):
                c = ov.op.Constant(np.ascontiguousarray(w.get_data().astype(np.float16)))
                op.input(1).replace_source_output(ov.opset1.convert(c, ov.Type.f32).output(0))
                halved += 1
    model.validate_nodes_and_infer_types()
    renamed = 0
    for renamed, op in enumerate(constant_only_ops(model), 1):
        op.set_friendly_name(f"c{renamed - 1}")
        for out in op.outputs():
            out.get_tensor().set_names(set())
    return {"constants_merged": merged, "f16_weights": halved, "renamed": renamed}


#: the whitespace between two tags of the IR .xml (indentation and line ends): ``save_model`` escapes
#: ``<`` and ``>`` inside attribute values and the IR has no text content, so this is all formatting
_BETWEEN_TAGS = re.compile(rb">\s+<")


def save_ir(model, out_dir: Path, stem: str, fp16: bool, f16_float_weights: bool = False) -> tuple[Path, Path]:
    """Write ``<stem>.xml`` and ``<stem>.bin`` (weights compressed to fp16 with ``fp16``) of a
    `compact` copy of ``model`` (``model`` is left unchanged), the .xml without the whitespace
    between its tags; return their paths relative to ``out_dir``."""
    ov = import_openvino()
    xml, bin_ = Path(stem + ".xml"), Path(stem + ".bin")
    model = model.clone()
    compact(model, f16_float_weights=f16_float_weights)
    try:
        ov.save_model(model, str(Path(out_dir) / xml), compress_to_fp16=fp16)
    except Exception as e:  # noqa: BLE001
        raise ZooError(f"openvino.save_model cannot write {xml}: {str(e).strip().splitlines()[0][:200]}") from None
    if not (Path(out_dir) / bin_).is_file():
        raise ZooError(f"openvino.save_model wrote no {bin_} beside {xml}")
    path = Path(out_dir) / xml
    atomic_write_bytes(path, _BETWEEN_TAGS.sub(b"><", path.read_bytes()))
    return xml, bin_


def conv_module(op) -> str:
    """The ONNX node name a Convolution came from (``<node>/WithoutBiases`` when it had a bias)."""
    name = op.get_friendly_name()
    return name[: -len("/WithoutBiases")] if name.endswith("/WithoutBiases") else name
