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
"""
from __future__ import annotations

import json
from pathlib import Path

from exporters.openvino.quiet import import_openvino
from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta

#: where the metadata JSON lives in the IR's rt_info
META_PATH = ["ultraface_zoo", "meta"]
#: rt_info sections of the converted ONNX that are not ours to publish
DROPPED_RT_INFO = ("framework",)
CONV_TYPES = ("Convolution", "GroupConvolution")


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


def save_ir(model, out_dir: Path, stem: str, fp16: bool) -> tuple[Path, Path]:
    """Write ``<stem>.xml`` and ``<stem>.bin`` (weights compressed to fp16 with ``fp16``); return
    their paths relative to ``out_dir``."""
    ov = import_openvino()
    xml, bin_ = Path(stem + ".xml"), Path(stem + ".bin")
    try:
        ov.save_model(model, str(Path(out_dir) / xml), compress_to_fp16=fp16)
    except Exception as e:  # noqa: BLE001
        raise ZooError(f"openvino.save_model cannot write {xml}: {str(e).strip().splitlines()[0][:200]}") from None
    if not (Path(out_dir) / bin_).is_file():
        raise ZooError(f"openvino.save_model wrote no {bin_} beside {xml}")
    return xml, bin_


def conv_module(op) -> str:
    """The ONNX node name a Convolution came from (``<node>/WithoutBiases`` when it had a bias)."""
    name = op.get_friendly_name()
    return name[: -len("/WithoutBiases")] if name.endswith("/WithoutBiases") else name
