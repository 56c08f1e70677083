"""Issue 6: what is specific to the TFLite target (the matrix in test_targets.py covers parity)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the tflite extra is not installed")
pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")

from conftest import REFERENCE, assert_built  # noqa: E402


@pytest.fixture(scope="module")
def tflite_rfb(export_dir):
    folder, manifest, cp = export_dir("rfb-320", "tflite", "fp32,fp16,int8")
    assert_built(manifest, cp)
    return folder, {a["precision"]: a for a in manifest["artifacts"]}


def op_counts(path) -> Counter:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return Counter(op["op_name"] for op in it._get_ops_details())


def test_fp32_is_nhwc_native(tflite_rfb):
    from ai_edge_litert.interpreter import Interpreter

    folder, arts = tflite_rfb
    path = folder / arts["fp32"]["primary"]
    it = Interpreter(model_path=str(path))
    assert list(it.get_input_details()[0]["shape"]) == [1, 240, 320, 3]
    ops = op_counts(path)
    assert ops.get("TRANSPOSE", 0) <= 4, ops
    assert ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"] >= 50


def test_int8_io_flavours_and_quant_params(tflite_rfb):
    from ai_edge_litert.interpreter import Interpreter

    folder, arts = tflite_rfb
    io = arts["int8-io"]["meta"]["io"]
    assert io["int8_io"] is True and arts["int8"]["meta"]["io"]["int8_io"] is False
    it = Interpreter(model_path=str(folder / arts["int8-io"]["primary"]))
    inp = it.get_input_details()[0]
    assert inp["dtype"] == np.int8
    scale, zp = inp["quantization"]
    assert io["inputs"][0]["scale"] == pytest.approx(scale) and io["inputs"][0]["zero_point"] == zp
    assert {o["dtype"] for o in it.get_output_details()} == {np.int8}
    fl = Interpreter(model_path=str(folder / arts["int8"]["primary"]))
    assert fl.get_input_details()[0]["dtype"] == np.float32
    assert Counter(op["op_name"] for op in fl._get_ops_details())["CONV_2D"] >= 30


def test_against_the_original_tflite(tflite_rfb, batch_cache):
    """The original's raw-head file and ours agree on real images (theirs drifts ~5e-4 from PyTorch)."""
    from zoo.exporters.tflite.runner import TfliteNet

    folder, arts = tflite_rfb
    x, _, _ = batch_cache((320, 240))
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    with TfliteNet(REFERENCE / "tflite" / "version-RFB-320_without_postprocessing.tflite") as ref, \
            TfliteNet(folder / arts["fp32"]["primary"]) as ours:
        a, b = ref.infer(xh), ours.infer(xh)
    assert np.abs(a["scores"] - b["scores"]).max() < 2e-3
    assert np.abs(a["boxes"] - b["boxes"]).max() < 5e-3


def conv_weight_dtypes(path) -> dict[str, str]:
    """Module path (the name scope that starts a convolution's output name) -> its weight dtype."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    t = {d["index"]: d for d in it.get_tensor_details()}
    return {t[op["outputs"][0]]["name"].split("/")[0]: np.dtype(t[op["inputs"][1]]["dtype"]).name
            for op in it._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")}


@pytest.mark.parametrize("flavour", ["int8", "int8-io"])
def test_int8_keeps_the_sensitivity_analysis_layers_float(tflite_rfb, flavour):
    """The layers the model-level analysis keeps float (as ONNX and MNN do) compute in float in the
    .tflite (float32 weights), every other convolution in int8; the file stays <= 45% of fp32."""
    folder, arts = tflite_rfb
    a = arts[flavour]
    q = a["meta"]["io"]["quantization"]
    kept = q["float_kept"]
    assert kept and kept == q["sensitivity"]["float_kept"]
    path = folder / a["primary"]
    dtypes = conv_weight_dtypes(path)
    assert len(dtypes) == 52 and set(kept) <= set(dtypes)
    assert {m for m, d in dtypes.items() if d == "float32"} == set(kept)
    assert {d for m, d in dtypes.items() if m not in kept} == {"int8"}
    assert sorted(n.split("/")[0] for n in q["float_ops"]) == sorted(kept)
    assert path.stat().st_size <= 0.45 * (folder / arts["fp32"]["primary"]).stat().st_size
    assert a["meta"]["io"]["int8_io"] is (flavour == "int8-io")
