"""The end-to-end NMS head (`--nms`) is compared, not waved through: its one output, the detection rows,
against the reference's rows after the same NMS (`nms_rows`, ONNX NonMaxSuppression's semantics), each
value within its tier, every confident row paired."""
from __future__ import annotations

import numpy as np
import pytest

from zoo.validation.parity import DETECT, NMS_MAX_PER_CLASS, TIERS, ParityInput, compare, nms_rows, weak_evidence

LABELS = ("BACKGROUND", "face")


def _scene(rng, p=300, k=2):
    """p boxes in clusters (so NMS has work), scores spread around the threshold."""
    centres = rng.uniform(0.1, 0.9, (12, 2))
    c = centres[rng.integers(0, len(centres), p)] + rng.normal(0, 0.02, (p, 2))
    wh = rng.uniform(0.03, 0.15, (p, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)
    fg = rng.uniform(0.5, 1.0, (p, k - 1))
    scores = np.concatenate([1 - fg.sum(1, keepdims=True) / (k - 1), fg / (k - 1) * (k - 1)], 1)
    scores[:, 0] = 1 - scores[:, 1:].max(1)
    return scores.astype(np.float32), boxes


def _nms_graph(k: int):
    """Our exporter's end-to-end NMS (add_nms) on a graph whose inputs are the scores and boxes themselves."""
    import onnx
    from onnx import TensorProto, helper

    from zoo.exporters.onnx.convert import OPSET, add_nms

    g = helper.make_graph([], "nms", [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "P", k]),
                                      helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, "P", 4])], [])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return add_nms(model, k)


@pytest.mark.parametrize("k", [2, 3])
def test_nms_rows_are_what_the_exported_graph_computes(k):
    """The reference side's NMS equals onnxruntime running our exporter's NMS nodes, row for row."""
    import onnxruntime as ort

    sess = ort.InferenceSession(_nms_graph(k).SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(k)
    total = 0
    for _ in range(8):
        scores, boxes = _scene(rng, k=k)
        (got,) = sess.run(["detections"], {"scores": scores[None], "boxes": boxes[None]})
        want = nms_rows(scores, boxes, DETECT["score_threshold"], DETECT["iou_threshold"])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)
        total += len(want)
    assert total > 50


def test_nms_rows_semantics():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.5], [0, 0.5, 1, 1], [0, 0, 0.25, 1], [2, 2, 3, 3]], np.float32)
    # IoU(0, 1) = 0.5 > 0.3: dropped; IoU(0, 3) = 0.25: kept; box 2 scores exactly the threshold: out
    s = np.array([0.9, 0.8, 0.7, 0.75, 0.71], np.float32)
    scores = np.stack([1 - s, s], 1)
    rows = nms_rows(scores, boxes, 0.7, 0.3)
    assert rows[:, 4].tolist() == pytest.approx([0.9, 0.75, 0.71])
    assert rows[:, 5].tolist() == [1, 1, 1]
    np.testing.assert_array_equal(rows[:, :4], boxes[[0, 3, 4]])
    assert len(nms_rows(scores, boxes, 0.7, 0.3, max_per_class=2)) == 2
    assert nms_rows(scores, boxes, 0.95, 0.3).shape == (0, 6)
    assert NMS_MAX_PER_CLASS == 200


def _case(rng, n=3):
    scores, boxes = zip(*[_scene(rng) for _ in range(n)])
    ref = {"scores": np.stack(scores), "boxes": np.stack(boxes)}
    rows = [nms_rows(ref["scores"][i], ref["boxes"][i], DETECT["score_threshold"], DETECT["iou_threshold"]) for i in range(n)]
    data = ParityInput(np.zeros((n, 3, 4, 4), np.float32), [f"i{i}.jpg" for i in range(n)], [(640, 480)] * n)
    return ref, rows, data


def test_identical_rows_pass_and_the_tensor_is_recorded():
    ref, rows, data = _case(np.random.default_rng(0))
    r = compare(ref, {"detections": [x.copy() for x in rows]}, data, LABELS, 300, "fp32")
    assert r["passed"], r["failures"]
    st = r["outputs"]["detections"]
    assert st["passed"] and st["max_abs"] == 0.0
    assert st["rows"]["reference"] == st["rows"]["paired"] == sum(len(x) for x in rows) > 10
    assert r["detections"]["matched"] == r["detections"]["reference"] > 10
    assert not weak_evidence(r, 10**6)  # fp32: gated on its one tensor


@pytest.mark.parametrize("precision", [p for p, t in TIERS.items() if t["atol"] is not None])
@pytest.mark.parametrize("column", [0, 3, 4])
@pytest.mark.parametrize("factor, passes", [(0.99, True), (1.01, False)])
def test_each_value_of_a_row_within_its_tier(precision, column, factor, passes):
    """A box corner or a score moved a hair inside / outside the tier, on a row far from the threshold."""
    tier = TIERS[precision]
    ref, rows, data = _case(np.random.default_rng(1))
    got = [x.copy() for x in rows]
    i = 1
    j = int(np.argmax(got[i][:, 4]))  # the most confident row: no borderline excuse
    v = got[i][j, column]
    key = "scores" if column == 4 else "boxes"
    got[i][j, column] = v - factor * (tier["atol"][key] + tier["rtol"] * abs(v))
    r = compare(ref, {"detections": got}, data, LABELS, 300, precision)
    st = r["outputs"]["detections"]
    assert st["passed"] is passes
    assert st["worst_image"] == i
    assert any(f.startswith("output 'detections' diverges") and "i1.jpg" in f for f in r["failures"]) is not passes


def test_a_confident_row_lost_fails_a_borderline_one_does_not():
    ref, rows, data = _case(np.random.default_rng(2))
    got = [x.copy() for x in rows]
    j = int(np.argmax(got[0][:, 4]))
    got[0] = np.delete(got[0], j, 0)
    r = compare(ref, {"detections": got}, data, LABELS, 300, "fp32")
    assert not r["outputs"]["detections"]["passed"] and r["outputs"]["detections"]["rows"]["unpaired"] == 1
    assert any("has no counterpart" in f and "i0.jpg" in f for f in r["failures"]), r["failures"]
    # an extra confident row where the reference has none fails too
    got = [x.copy() for x in rows]
    got[2] = np.vstack([got[2], [[0.0, 0.0, 0.01, 0.01, 0.99, 1.0]]])
    r = compare(ref, {"detections": got}, data, LABELS, 300, "fp32")
    assert r["outputs"]["detections"]["rows"]["unpaired"] == 1 and not r["passed"]
    # a row a hair above the threshold the artifact holds a hair under: within the scores tolerance, excused
    got = [x.copy() for x in rows]
    got[1] = np.vstack([got[1], [[0.0, 0.0, 0.01, 0.01, DETECT["score_threshold"] + 5e-5, 1.0]]])
    st = compare(ref, {"detections": got}, data, LABELS, 300, "fp32")["outputs"]["detections"]
    assert st["passed"] and st["rows"]["borderline"] == 1 and st["rows"]["unpaired"] == 0


def test_int8_rows_are_reported_not_gated():
    ref, rows, data = _case(np.random.default_rng(3))
    got = [x + np.array([0.01, 0, 0, 0, 0, 0]) for x in rows]
    r = compare(ref, {"detections": got}, data, LABELS, 300, "int8")
    assert "passed" not in r["outputs"]["detections"] and r["outputs"]["detections"]["max_abs"] == pytest.approx(0.01)
    assert r["passed"], r["failures"]
