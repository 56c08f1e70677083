"""Issue 7: our Caffe files from `zoo export` against the original's, both run in OpenCV."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from conftest import REFERENCE
from zoo.exporters import get_target

if not get_target("caffe").available():
    pytest.skip(f"caffe target unavailable: {get_target('caffe').missing()}", allow_module_level=True)


def layer_types(prototxt) -> Counter:
    from google.protobuf import text_format

    from zoo.exporters.caffe.caffe_pb2 import NetParameter

    net = NetParameter()
    text_format.Parse(prototxt.read_text(), net, allow_unknown_field=True)
    return Counter(l.type for l in net.layer)


@pytest.mark.parametrize("model_id,ref", [("rfb-320", "RFB-320"), ("slim-320", "slim-320")])
def test_ours_equal_the_original_caffe_in_opencv(model_id, ref, export_dir, batch_cache):
    from zoo.exporters.caffe.runner import CaffeNet

    folder, manifest, cp = export_dir(model_id, "caffe", "fp32")
    assert cp.returncode == 0, cp.stderr[-2000:]
    (art,) = manifest["artifacts"]
    assert art["head"] == "raw"
    proto = folder / art["primary"]
    x, _, _ = batch_cache((320, 240))
    with CaffeNet(REFERENCE / "caffe" / f"{ref}.prototxt", REFERENCE / "caffe" / f"{ref}.caffemodel") as theirs, \
            CaffeNet(proto, proto.with_suffix(".caffemodel")) as ours:
        a, b = theirs.infer(x), ours.infer(x)
    np.testing.assert_allclose(b["scores"], a["scores"], atol=1e-4)
    np.testing.assert_allclose(b["boxes"], a["boxes"], atol=1e-4)
    mine, orig = layer_types(proto), layer_types(REFERENCE / "caffe" / f"{ref}.prototxt")
    assert mine["Convolution"] == orig["Convolution"] and mine["Softmax"] == orig["Softmax"] == 1


def test_decoded_head_in_caffe(export_dir):
    folder, manifest, cp = export_dir("rfb-320", "caffe", "fp32", "decoded")
    assert cp.returncode == 0 and manifest["artifacts"][0]["parity"]["passed"]
    assert manifest["artifacts"][0]["parity"]["detections"]["min_iou"] >= 0.99


def test_unmappable_op_is_named_and_leaves_nothing(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from zoo.core.errors import ZooError
    from zoo.exporters.caffe.writer import onnx_to_caffe

    g = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], name="conv0", kernel_shape=[1, 1]),
         helper.make_node("Sigmoid", ["c"], ["scores"], name="squash")],
        "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], [0.1] * 6)],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ZooError, match="Sigmoid.*squash"):
        onnx_to_caffe(path, out / "x.prototxt", out / "x.caffemodel")
    assert not list(out.iterdir())


def test_opencv5_is_reported_plainly(monkeypatch):
    import cv2

    from zoo.exporters.caffe import CaffeTarget

    monkeypatch.setattr(cv2, "__version__", "5.0.0")
    miss = CaffeTarget().missing()
    assert miss and "opencv-python-headless<5" in miss[0]
