"""ONNX -> Caffe writer and OpenCV runner: parity with onnxruntime and the original's Caffe files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from zoo.core.errors import ZooError

onnx = pytest.importorskip("onnx")
pytest.importorskip("google.protobuf")

from zoo.exporters.caffe.runner import CaffeNet  # noqa: E402
from zoo.exporters.caffe.writer import check_supported, onnx_to_caffe  # noqa: E402
from zoo.core.model.priors import prior_count  # noqa: E402

SHARED = Path(os.environ.get("ZOO_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
REF = SHARED / "upstream" / "reference"
IMAGES = sorted((SHARED / "images").glob("*.jpg"))
TOL = 1e-4


def _cv2():
    cv2 = pytest.importorskip("cv2")
    if int(cv2.__version__.split(".")[0]) >= 5 or not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer")
    return cv2


def _ort_session(path: Path):
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _need(*paths: Path) -> None:
    for p in paths:
        if not p.exists():
            pytest.skip(f"missing shared file {p}")


@pytest.fixture(scope="module")
def images_320() -> np.ndarray:
    cv2 = _cv2()
    if not IMAGES:
        pytest.skip(f"no images in {SHARED / 'images'}")
    batch = []
    for p in IMAGES:
        img = cv2.imread(str(p))
        img = cv2.cvtColor(cv2.resize(img, (320, 240)), cv2.COLOR_BGR2RGB).astype(np.float32)
        batch.append(((img - 127.0) / 128.0).transpose(2, 0, 1))
    return np.stack(batch).astype(np.float32)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, tuple[Path, Path, dict]]:
    out = tmp_path_factory.mktemp("caffe")
    res = {}
    for v in ("RFB", "slim"):
        src = REF / "onnx" / f"version-{v}-320_simplified.onnx"
        _need(src)
        proto, model = out / f"{v}-320.prototxt", out / f"{v}-320.caffemodel"
        info = onnx_to_caffe(src, proto, model)
        res[v] = (proto, model, info)
    return res


def test_generated_pb2_imports_on_installed_protobuf():
    import google.protobuf

    from zoo.exporters.caffe import caffe_pb2

    assert int(google.protobuf.__version__.split(".")[0]) >= 4
    lp = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    # Official numbers (BVLC), and OpenCV's for the SSD-fork Permute.
    assert caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name["layer"].number == 100
    assert {k: lp[k].number for k in ("name", "type", "bottom", "top", "blobs")} == {
        "name": 1, "type": 2, "bottom": 3, "top": 4, "blobs": 7}
    assert lp["convolution_param"].number == 106 and lp["input_param"].number == 143
    assert lp["permute_param"].number == 148 and lp["reshape_param"].number == 133
    assert caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name["shape"].number == 7
    net = caffe_pb2.NetParameter(name="x")
    layer = net.layer.add(name="p", type="Permute")
    layer.permute_param.order.extend([0, 2, 3, 1])
    back = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    assert list(back.layer[0].permute_param.order) == [0, 2, 3, 1]


def test_reads_reference_caffemodel():
    from zoo.exporters.caffe import caffe_pb2

    path = REF / "caffe" / "RFB-320.caffemodel"
    _need(path)
    net = caffe_pb2.NetParameter.FromString(path.read_bytes())
    convs = [l for l in net.layer if l.type == "Convolution"]
    assert len(convs) == 52 and tuple(convs[0].blobs[0].shape.dim) == (16, 3, 3, 3)


@pytest.mark.parametrize("variant", ["RFB", "slim"])
def test_matches_onnxruntime(variant, converted, images_320):
    proto, model, info = converted[variant]
    assert info["output_shapes"] == {"boxes": [1, 4420, 4], "scores": [1, 4420, 2]}
    sess = _ort_session(REF / "onnx" / f"version-{variant}-320_simplified.onnx")
    with CaffeNet(proto, model) as net:
        batch = net.infer(images_320)  # our Reshapes copy the batch axis: one forward for N images
        for i in range(len(images_320)):
            x = images_320[i:i + 1]
            scores, boxes = sess.run(["scores", "boxes"], {"input": x})
            outs = net.infer(x)
            assert outs["scores"].shape == scores.shape and outs["boxes"].shape == boxes.shape
            assert np.abs(outs["scores"] - scores).max() < TOL, IMAGES[i].name
            assert np.abs(outs["boxes"] - boxes).max() < TOL, IMAGES[i].name
            assert np.abs(batch["scores"][i] - outs["scores"][0]).max() < 1e-5
            assert np.abs(batch["boxes"][i] - outs["boxes"][0]).max() < 1e-5


@pytest.mark.parametrize("variant", ["RFB", "slim"])
def test_matches_reference_caffe(variant, converted, images_320):
    ref_proto, ref_model = REF / "caffe" / f"{variant}-320.prototxt", REF / "caffe" / f"{variant}-320.caffemodel"
    _need(ref_proto, ref_model)
    proto, model, _ = converted[variant]
    with CaffeNet(proto, model) as ours, CaffeNet(ref_proto, ref_model) as ref:
        # The reference's output blobs are named scores/boxes too (read off its prototxt).
        assert set(ref.output_names) == {"scores", "boxes"}
        for i in range(len(images_320)):
            x = images_320[i:i + 1]
            a, b = ours.infer(x), ref.infer(x)
            for key, k in (("scores", 2), ("boxes", 4)):
                pa, pb = a[key].reshape(-1, k), b[key].reshape(-1, k)
                assert pa.shape == pb.shape == (4420, k)
                assert np.abs(pa - pb).max() < TOL, (IMAGES[i].name, key)


def test_layer_types_match_reference(converted):
    from google.protobuf import text_format

    from zoo.exporters.caffe import caffe_pb2

    _need(REF / "caffe" / "RFB-320.prototxt")
    ref = caffe_pb2.NetParameter()
    text_format.Parse((REF / "caffe" / "RFB-320.prototxt").read_text(), ref)
    counts: dict[str, int] = {}
    for l in ref.layer:
        counts[l.type] = counts.get(l.type, 0) + 1
    assert converted["RFB"][2]["layer_counts"] == dict(sorted(counts.items()))


def test_deterministic(tmp_path):
    src = REF / "onnx" / "version-RFB-320_simplified.onnx"
    _need(src)
    outs = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        onnx_to_caffe(src, tmp_path / d / "n.prototxt", tmp_path / d / "n.caffemodel")
        outs.append(((tmp_path / d / "n.prototxt").read_bytes(), (tmp_path / d / "n.caffemodel").read_bytes()))
    assert outs[0] == outs[1]
    assert b"blobs" not in outs[0][0]  # the text file carries no weights


def _tiny_model(tail_op: str, path: Path) -> Path:
    h = onnx.helper
    rng = np.random.RandomState(0)
    w = onnx.numpy_helper.from_array(rng.randn(4, 3, 3, 3).astype(np.float32), "w")
    nodes = [h.make_node("Conv", ["input", "w"], ["c"], name="Conv_0", pads=[1, 1, 1, 1]),
             h.make_node(tail_op, ["c"], ["boxes"], name=f"{tail_op}_123")]
    graph = h.make_graph(nodes, "tiny", [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                         [h.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("op", ["Exp", "Sigmoid"])
def test_unsupported_op_clear_error_no_files(op, tmp_path):
    src = _tiny_model(op, tmp_path / "tiny.onnx")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ZooError) as err:
        check_supported(onnx.load(str(src)))
    assert f"'{op}'" in str(err.value) and f"{op}_123" in str(err.value) and "supported: " in str(err.value)
    with pytest.raises(ZooError, match=f"cannot map ONNX op '{op}' \\(node '{op}_123'\\)"):
        onnx_to_caffe(src, out / "n.prototxt", out / "n.caffemodel")
    assert list(out.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    src = REF / "onnx" / "version-slim-320_simplified.onnx"
    _need(src)
    real_replace = os.replace
    calls = []

    def flaky_replace(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(ZooError, match="disk full"):
        onnx_to_caffe(src, tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    assert list(tmp_path.iterdir()) == []


def test_scaled_sum_clip_and_unfolded_batchnorm(tmp_path):
    """Mul-by-scalar + Add -> Eltwise SUM with coeff; Clip(0, inf) -> ReLU; BN after Conv folded, BN alone -> Scale."""
    _cv2()
    h = onnx.helper
    rng = np.random.RandomState(1)
    arr = onnx.numpy_helper.from_array
    inits = [
        arr(rng.randn(8, 3, 3, 3).astype(np.float32), "w1"),
        arr(rng.randn(8, 1, 3, 3).astype(np.float32), "w2"),
        arr(rng.uniform(0.5, 2, 8).astype(np.float32), "g"), arr(rng.randn(8).astype(np.float32), "b"),
        arr(rng.randn(8).astype(np.float32), "m"), arr(rng.uniform(0.5, 2, 8).astype(np.float32), "v"),
        arr(np.array(0.75, dtype=np.float32), "k"), arr(np.array(0.0, dtype=np.float32), "zero"),
        arr(np.array([0, -1, 4], dtype=np.int64), "shape"),
    ]
    nodes = [
        h.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        h.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["bn1"], epsilon=1e-3),
        h.make_node("Clip", ["bn1", "zero"], ["r1"]),
        h.make_node("Conv", ["r1", "w2"], ["c2"], pads=[2, 2, 2, 2], dilations=[2, 2], group=8),
        h.make_node("Mul", ["c2", "k"], ["s2"]),
        h.make_node("Add", ["s2", "r1"], ["sum"]),
        h.make_node("BatchNormalization", ["sum", "g", "b", "m", "v"], ["bn2"]),
        h.make_node("Relu", ["bn2"], ["r2"]),
        h.make_node("Transpose", ["r2"], ["t"], perm=[0, 2, 3, 1]),
        h.make_node("Reshape", ["t", "shape"], ["boxes"]),
        h.make_node("Reshape", ["t", "shape"], ["pre"]),
        h.make_node("Softmax", ["pre"], ["scores"], axis=2),
    ]
    graph = h.make_graph(nodes, "mix", [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 6, 10])],
                         [h.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, None),
                          h.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, None)], inits)
    src = tmp_path / "mix.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 13)]), str(src))
    info = onnx_to_caffe(src, tmp_path / "m.prototxt", tmp_path / "m.caffemodel")
    counts = info["layer_counts"]
    assert counts["Eltwise"] == 1 and counts["Scale"] == 1 and "Power" not in counts and counts["Convolution"] == 2
    assert "coeff: 0.75" in (tmp_path / "m.prototxt").read_text()
    x = np.random.RandomState(2).uniform(-1, 1, (1, 3, 6, 10)).astype(np.float32)
    scores, boxes = _ort_session(src).run(["scores", "boxes"], {"input": x})
    with CaffeNet(tmp_path / "m.prototxt", tmp_path / "m.caffemodel") as net:
        outs = net.infer(x)
    assert np.abs(outs["scores"] - scores).max() < TOL
    assert np.abs(outs["boxes"] - boxes).max() < TOL


def test_rfb_640_raw_head_cut_from_decoded(tmp_path):
    """The reference 640 ONNX has the decoded head: cut it before decoding, keep BN unfolded, convert."""
    onnxsim = pytest.importorskip("onnxsim")
    _cv2()
    src = REF / "onnx" / "version-RFB-640.onnx"
    _need(src)
    model = onnx.load(str(src))
    with pytest.raises(ZooError, match="onnxsim"):
        check_supported(model)  # Shape/Gather chains of the raw export
    # Raw boxes are the Concat feeding the decoder's first Slice.
    concat_outs = {o for n in model.graph.node if n.op_type == "Concat" for o in n.output}
    raw_boxes = next(n.input[0] for n in model.graph.node if n.op_type == "Slice" and n.input[0] in concat_outs)
    keep = [o for o in model.graph.output if o.name == "scores"]
    del model.graph.output[:]
    model.graph.output.extend(keep + [onnx.helper.make_tensor_value_info(raw_boxes, onnx.TensorProto.FLOAT,
                                                                          [1, prior_count(640, 480), 4])])
    simplified, ok = onnxsim.simplify(model, skip_fuse_bn=True)
    assert ok
    for n in simplified.graph.node:
        n.output[:] = ["boxes" if o == raw_boxes else o for o in n.output]
    for o in simplified.graph.output:
        if o.name == raw_boxes:
            o.name = "boxes"
    assert any(n.op_type == "BatchNormalization" for n in simplified.graph.node)
    cut = tmp_path / "rfb640_raw.onnx"
    onnx.save(simplified, str(cut))
    info = onnx_to_caffe(cut, tmp_path / "r640.prototxt", tmp_path / "r640.caffemodel")
    assert info["output_shapes"] == {"boxes": [1, 17640, 4], "scores": [1, 17640, 2]}
    assert "BatchNorm" not in info["layer_counts"] and "Scale" not in info["layer_counts"]  # all folded
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, 480, 640)).astype(np.float32)
    scores, boxes = _ort_session(cut).run(["scores", "boxes"], {"input": x})
    with CaffeNet(tmp_path / "r640.prototxt", tmp_path / "r640.caffemodel", threads=2) as net:
        outs = net.infer(x)
    assert np.abs(outs["scores"] - scores).max() < TOL
    assert np.abs(outs["boxes"] - boxes).max() < TOL


def test_decoded_head_matches_original_postprocessed_onnx(tmp_path, images_320):
    raw, decoded = REF / "onnx" / "version-RFB-320_simplified.onnx", REF / "onnx" / "version-RFB-320.onnx"
    _need(raw, decoded)
    info = onnx_to_caffe(raw, tmp_path / "d.prototxt", tmp_path / "d.caffemodel", head="decoded")
    assert {"Slice", "Scale", "Exp"} <= set(info["layer_counts"])
    sess = _ort_session(decoded)
    with CaffeNet(tmp_path / "d.prototxt", tmp_path / "d.caffemodel") as net:
        outs = net.infer(images_320)
    for i in range(len(images_320)):
        scores, boxes = sess.run(["scores", "boxes"], {"input": images_320[i:i + 1]})
        assert np.abs(outs["scores"][i] - scores[0]).max() < TOL
        assert np.abs(outs["boxes"][i] - boxes[0]).max() < TOL


def test_runner_errors(converted, monkeypatch):
    cv2 = _cv2()
    proto, model, _ = converted["slim"]
    with CaffeNet(proto, model) as net:
        with pytest.raises(ZooError, match="expects 320x240"):
            net.infer(np.zeros((1, 3, 120, 160), np.float32))
        with pytest.raises(ZooError, match=r"\(N, 3, H, W\)"):
            net.infer(np.zeros((3, 240, 320), np.float32))
    with pytest.raises(ZooError, match="not found"):
        with CaffeNet(proto, proto.with_suffix(".missing")):
            pass
    with pytest.raises(ZooError, match="OpenCV cannot load"):
        with CaffeNet(model, proto):  # swapped files
            pass
    monkeypatch.setattr(cv2, "__version__", "5.0.0")
    with pytest.raises(ZooError, match="opencv-python-headless < 5"):
        with CaffeNet(proto, model):
            pass
