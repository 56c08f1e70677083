"""WIDER FACE val AP: the official ground truth, the protocol on sets of known AP, and `zoo eval` end to end."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from conftest import IMAGES, SHARED, assert_clean_error, zoo
from zoo.validation.widerface import LEVELS, GroundTruth, ImageGT, evaluate, load_ground_truth, overlaps
from zoo.core.errors import ZooError

GT_DIR = SHARED / "widerface" / "ground_truth"
FAR = 100_000.0  # a shift that puts a box far from every face


@pytest.fixture(scope="module")
def real_gt() -> GroundTruth:
    if not (GT_DIR / "wider_face_val.mat").is_file():
        pytest.skip(f"WIDER FACE ground truth not found in {GT_DIR}")
    return load_ground_truth(GT_DIR)


def corners(xywh: np.ndarray) -> np.ndarray:
    b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 2:] += b[:, :2]
    return b


def recallable(im: ImageGT) -> np.ndarray:
    """Faces a perfect detector can recall: a valid size, and not an exact repeat of an earlier box."""
    ok = (im.boxes[:, 2] >= 0) & (im.boxes[:, 3] >= 0)
    _, first = np.unique(im.boxes, axis=0, return_index=True)
    unique = np.zeros(len(im.boxes), dtype=bool)
    unique[first] = True
    return ok & unique


def single(boxes, keep, event="0--Test", name="img") -> ImageGT:
    k = {lv: np.asarray(keep, dtype=np.int64) for lv in LEVELS}
    return ImageGT(event, name, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), k)


# --------------------------------------------------------------------------- the official ground truth
@pytest.mark.smoke
def test_real_ground_truth(real_gt):
    gt = real_gt
    assert len(gt.events) == 61 and len(set(gt.events)) == 61
    assert gt.num_images == 3226
    assert gt.events[0] == "0--Parade" and gt.images[0].key == ("0--Parade", "0_Parade_marchingband_1_465")
    assert gt.face_count() == 39708
    assert [gt.face_count(lv) for lv in LEVELS] == [7211, 13319, 31958]
    assert len({im.key for im in gt.images}) == 3226
    for im in gt.images:
        assert re.fullmatch(r"\d+--\S+", im.event) and im.name.startswith(im.event.split("--")[0] + "_")
        assert im.boxes.shape[1] == 4 and len(im.boxes) >= 1
        for lv in LEVELS:
            k = im.keep[lv]
            assert k.dtype == np.int64 and len(np.unique(k)) == len(k)
            assert k.size == 0 or (1 <= k.min() and k.max() <= len(im.boxes))
        # the levels are nested: easy within medium within hard
        assert set(im.keep["easy"]) <= set(im.keep["medium"]) <= set(im.keep["hard"])
    assert sum(1 for im in gt.images if len(im.keep["easy"]) == 0) == 622
    assert sum(1 for im in gt.images if len(im.keep["hard"]) == 0) == 7


def test_missing_or_corrupt_mat_files(tmp_path):
    if not (GT_DIR / "wider_face_val.mat").is_file():
        pytest.skip(f"WIDER FACE ground truth not found in {GT_DIR}")
    d = tmp_path / "gt"
    d.mkdir()
    with pytest.raises(ZooError, match="wider_face_val.mat"):
        load_ground_truth(d)
    for name in ("wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat"):
        (d / name).symlink_to(GT_DIR / name)
    with pytest.raises(ZooError, match="wider_hard_val.mat.*not found|not found.*wider_hard_val.mat"):
        load_ground_truth(d)
    (d / "wider_hard_val.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated" + bytes(20))
    with pytest.raises(ZooError, match="wider_hard_val.mat"):
        load_ground_truth(d)
    (d / "wider_hard_val.mat").unlink()
    (d / "wider_hard_val.mat").symlink_to(GT_DIR / "wider_face_val.mat")  # a valid .mat without gt_list
    with pytest.raises(ZooError, match="wider_hard_val.mat.*gt_list"):
        load_ground_truth(d)
    with pytest.raises(ZooError, match="not a folder"):
        load_ground_truth(tmp_path / "nope")


# --------------------------------------------------------------------------- the protocol, hand-made sets
def test_iou_uses_inclusive_pixels():
    # boxoverlap.m: widths x2 - x1 + 1. Two 10x10-pixel boxes (0..9) overlapping on 5 columns: 50 / 150.
    o = overlaps(np.array([[0.0, 0, 9, 9]]), np.array([[5.0, 0, 14, 9], [0, 0, 9, 9], [10, 10, 19, 19]]))
    np.testing.assert_allclose(o, [[50 / 150, 1.0, 0.0]])
    # a zero-size annotation still overlaps its exact copy
    assert overlaps(np.array([[3.0, 3, 3, 3]]), np.array([[3.0, 3, 3, 3]]))[0, 0] == 1.0


def test_hand_made_known_aps():
    faces = [[0, 0, 20, 20], [100, 0, 20, 20]]
    gt = GroundTruth(("0--Test",), (single(faces, [1, 2]),))
    tp1, tp2 = corners(faces)
    fp = tp1 + [0, 500, 0, 500]
    key = ("0--Test", "img")
    # TP 1.0, FP 0.6, TP 0.2 -> P/R points (1, 1/2), (1/2, 1/2), (2/3, 1): AP = 1/2 * 1 + 1/2 * 2/3
    aps = evaluate({key: np.array([[*tp1, 1.0], [*fp, 0.6], [*tp2, 0.2]])}, gt)
    assert aps == pytest.approx({lv: 5 / 6 for lv in LEVELS}, abs=1e-12)
    # the FP below every TP leaves AP at 1
    assert evaluate({key: np.array([[*tp1, 1.0], [*tp2, 0.6], [*fp, 0.2]])}, gt)["hard"] == 1.0
    # a second prediction on a recalled face is a false positive
    aps = evaluate({key: np.array([[*tp1, 1.0], [*(tp1 + 1), 0.8], [*tp2, 0.5]])}, gt)
    assert aps["easy"] == pytest.approx(5 / 6, abs=1e-12)
    # order of rows does not matter (sorted by score), equal scores are fine
    assert evaluate({key: np.array([[*tp2, 0.3], [*tp1, 0.3]])}, gt)["medium"] == 1.0
    # shifted so IoU < 0.5 (0.6 of a width: IoU 0.25): nothing recalled
    shifted = corners(faces) + np.array([[12.6, 0, 12.6, 0]])
    assert overlaps(shifted, corners(faces)).max() < 0.5
    assert evaluate({key: np.c_[shifted, [0.9, 0.8]]}, gt) == {lv: 0.0 for lv in LEVELS}
    # no predictions at all, or a level without faces
    assert evaluate({}, gt) == {lv: 0.0 for lv in LEVELS}
    empty = GroundTruth(("0--Test",), (single(faces, []),))
    assert all(np.isnan(v) for v in evaluate({key: np.array([[*tp1, 1.0]])}, empty).values())
    with pytest.raises(ZooError, match="0--Test/img"):
        evaluate({key: np.zeros((2, 4))}, gt)


def test_ignored_faces_do_not_count():
    faces = [[0, 0, 20, 20], [100, 0, 20, 20], [200, 0, 20, 20]]
    b = corners(faces)
    img = ImageGT("0--Test", "a", np.asarray(faces, dtype=np.float64),
                  {"easy": np.array([1]), "medium": np.array([1, 2]), "hard": np.array([1, 2, 3])})
    gt = GroundTruth(("0--Test",), (img,))
    # the faces outside a level get the best scores: ignored there, so precision stays 1 at every level
    preds = {("0--Test", "a"): np.c_[b[::-1], [1.0, 0.9, 0.1]]}
    assert evaluate(preds, gt) == {lv: 1.0 for lv in LEVELS}
    # the same boxes moved away from their faces are false positives above the TP: AP = 1/3 at easy
    moved = np.c_[b[::-1] + [FAR, 0, FAR, 0], [1.0, 0.9, 0.1]]
    moved[2, :4] = b[0]
    assert evaluate({("0--Test", "a"): moved}, gt)["easy"] == pytest.approx(1 / 3, abs=1e-12)
    # an image whose faces are all outside the level is still evaluated (as the official code does):
    # a prediction on its face is ignored, one elsewhere is a false positive
    other = ImageGT("0--Test", "b", np.array([[0.0, 0, 20, 20]]), {lv: np.zeros(0, np.int64) for lv in LEVELS})
    one = ImageGT("0--Test", "a", np.array([[0.0, 0, 20, 20]]), {lv: np.array([1]) for lv in LEVELS})
    gt2 = GroundTruth(("0--Test",), (one, other))
    tp = [0.0, 0, 20, 20, 0.5]
    assert evaluate({one.key: np.array([tp]), other.key: np.array([[0.0, 0, 20, 20, 1.0]])}, gt2)["easy"] == 1.0
    assert evaluate({one.key: np.array([tp]), other.key: np.array([[300.0, 0, 320, 20, 1.0]])}, gt2)["easy"] == 0.5


# --------------------------------------------------------------------------- the protocol on the real ground truth
def test_perfect_predictions_real_gt(real_gt):
    rng = np.random.default_rng(0)
    preds, expected = {}, {lv: 0 for lv in LEVELS}
    for im in real_gt.images:
        ok = recallable(im)
        preds[im.key] = np.c_[corners(im.boxes)[ok], rng.random(ok.sum())]
        for lv in LEVELS:
            expected[lv] += int(ok[im.keep[lv] - 1].sum())
    aps = evaluate(preds, real_gt)
    assert aps["easy"] == 1.0 and aps["medium"] == 1.0
    # two hard faces cannot be recalled: a negative-width box and an exact duplicate
    assert expected["hard"] == real_gt.face_count("hard") - 2
    assert aps["hard"] == pytest.approx(expected["hard"] / real_gt.face_count("hard"), abs=1e-12)


def test_shifted_predictions_real_gt(real_gt):
    far, near = {}, {}
    for im in real_gt.images:
        b = corners(im.boxes)
        s = np.linspace(1.0, 0.1, len(b))
        far[im.key] = np.c_[b + [FAR, 0, FAR, 0], s]
        w = (im.boxes[:, 2:3] + 1) * 0.6  # IoU with its own face 0.25
        near[im.key] = np.c_[b + np.c_[w, 0 * w, w, 0 * w], s]
    assert evaluate(far, real_gt) == {lv: 0.0 for lv in LEVELS}
    # shifted by 0.6 of a width, a box can only land on a neighbour in a crowd: almost nothing
    assert max(evaluate(near, real_gt).values()) < 0.005


def test_half_missed_real_gt(real_gt):
    rng = np.random.default_rng(1)
    preds, hit, n = {}, {lv: 0 for lv in LEVELS}, 0
    for im in real_gt.images:
        ok = recallable(im)
        take = np.zeros(len(im.boxes), dtype=bool)
        for i in np.flatnonzero(ok):  # every other face, counting across the whole set
            take[i] = n % 2 == 0
            n += 1
        preds[im.key] = np.c_[corners(im.boxes)[take], rng.random(take.sum())]
        for lv in LEVELS:
            hit[lv] += int(take[im.keep[lv] - 1].sum())
    aps = evaluate(preds, real_gt)
    for lv in LEVELS:
        assert aps[lv] == pytest.approx(hit[lv] / real_gt.face_count(lv), abs=1e-12)  # precision 1: AP = recall
        assert aps[lv] == pytest.approx(0.5, abs=0.02)


def test_false_positives_lower_ap_computably(real_gt):
    """Hard level: half the faces at high scores, F false positives in the middle, the rest low.

    Precision is 1 up to recall r1, then rises back to N / (N + F) when every
    recallable face N is in: AP = r1 + (N/T - r1) * N / (N + F), T the level's faces.
    """
    rng = np.random.default_rng(2)
    preds, n1, n, f, t = {}, 0, 0, 0, real_gt.face_count("hard")
    for k, im in enumerate(real_gt.images):
        keep = np.zeros(len(im.boxes), dtype=bool)
        keep[im.keep["hard"] - 1] = True
        idx = np.flatnonzero(recallable(im) & keep)
        high = np.arange(len(idx)) % 2 == 0
        s = np.where(high, rng.uniform(0.6, 1.0, len(idx)), rng.uniform(0.0, 0.3, len(idx)))
        rows = [np.c_[corners(im.boxes[idx]), s]]
        # one false positive per image, far from any face, scored between the two halves
        rows.append(np.array([[FAR, FAR, FAR + 30, FAR + 30, rng.uniform(0.4, 0.5)]]))
        f += 1
        preds[im.key] = np.concatenate(rows)
        n1 += int(high.sum())
        n += len(idx)
    r1 = n1 / t
    expected = r1 + (n / t - r1) * n / (n + f)
    ap = evaluate(preds, real_gt)["hard"]
    assert ap == pytest.approx(expected, abs=1e-9)
    assert 0.95 < ap < 0.96  # 3226 false positives among ~32k true ones


# --------------------------------------------------------------------------- `zoo eval` end to end
CHOSEN = {"0--Crowd": ["10", "6"], "1--Group": ["12", "19"]}


def _cell(items) -> np.ndarray:
    c = np.empty((len(items), 1), dtype=object)
    for i, v in enumerate(items):
        c[i, 0] = v
    return c


def write_official_gt(folder, events, levels) -> None:
    """The official .mat structure: cells per event of cells per image (scipy.io.savemat)."""
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    common = {
        "event_list": _cell([ev for ev, _ in events]),
        "file_list": _cell([_cell([name for name, _ in imgs]) for _, imgs in events]),
        "face_bbx_list": _cell([_cell([np.asarray(b, np.int32).reshape(-1, 4) for _, b in imgs]) for _, imgs in events]),
    }
    scipy.io.savemat(str(folder / "wider_face_val.mat"), common)
    for lv in LEVELS:
        gl = _cell([_cell([np.asarray(ix, np.uint16).reshape(-1, 1) for ix in per_img]) for per_img in levels[lv]])
        scipy.io.savemat(str(folder / f"wider_{lv}_val.mat"), {**common, "gt_list": gl})


@pytest.fixture(scope="module")
def tiny_wider(tmp_path_factory):
    """A WIDER-shaped folder from the shared photos; the gt boxes are the PyTorch model's own detections.

    Faces: detections scored > 0.7 (no detection lies within 0.003 of 0.7), written as the
    original wrote its results (floor x1, y1; ceil w, h). Levels: easy = taller than 70 px,
    medium = taller than 55 px, hard = all, plus one 3x3 box no detector finds (hard only).
    """
    from zoo.core.runtime import TorchRunner
    from zoo.core.images import read_bgr
    from zoo.core.model.processing import postprocess, preprocess
    from zoo.checkpoints.resolve import resolve_model

    root = tmp_path_factory.mktemp("wider")
    rm = resolve_model("rfb-320")
    events, levels, faces = [], {lv: [] for lv in LEVELS}, {lv: 0 for lv in LEVELS}
    with TorchRunner(rm.meta(), rm.state_dict) as runner:
        for ev, names in CHOSEN.items():
            imgs, lv_lists = [], {lv: [] for lv in LEVELS}
            for name in names:
                src = IMAGES / f"{name}.jpg"
                (root / "WIDER_val" / "images" / ev).mkdir(parents=True, exist_ok=True)
                shutil.copy(src, root / "WIDER_val" / "images" / ev / f"{ev.split('--')[0]}_{name}.jpg")
                img = read_bgr(src)
                h, w = img.shape[:2]
                out = runner.infer(preprocess(img, 320, 240))
                dets = postprocess(out["scores"][0], out["boxes"][0], w, h, ["BACKGROUND", "face"], 0.1, 0.3, 800, 400)
                assert not any(abs(d.score - 0.7) < 0.003 for d in dets)
                boxes = [[np.floor(d.box[0]), np.floor(d.box[1]), np.ceil(d.box[2] - d.box[0]), np.ceil(d.box[3] - d.box[1])]
                         for d in dets if d.score > 0.7]
                boxes.append([0, 0, 3, 3])  # undetectable
                heights = np.array([b[3] for b in boxes])
                idx = {"easy": np.flatnonzero(heights > 70) + 1, "medium": np.flatnonzero(heights > 55) + 1,
                       "hard": np.arange(1, len(boxes) + 1)}
                if name != "12":
                    idx["hard"] = idx["hard"][:-1]  # the 3x3 box counts in one image only
                imgs.append((f"{ev.split('--')[0]}_{name}", np.array(boxes)))
                for lv in LEVELS:
                    lv_lists[lv].append(idx[lv])
                    faces[lv] += len(idx[lv])
            events.append((ev, imgs))
            for lv in LEVELS:
                levels[lv].append(lv_lists[lv])
    write_official_gt(root / "gt", events, levels)
    return root, faces


def _check_eval_json(cp, faces):
    data = json.loads(cp.stdout)
    assert {"easy", "medium", "hard", "images", "model", "input_size"} <= set(data)
    assert data["images"] == 4 and data["model"] == "rfb-320" and data["input_size"] == [320, 240]
    assert data["faces"] == faces
    assert data["easy"] == pytest.approx(1.0, abs=1e-9)
    assert data["medium"] == pytest.approx(1.0, abs=1e-9)
    # the 3x3 box is never found: recall (n - 1) / n at precision 1
    assert data["hard"] == pytest.approx((faces["hard"] - 1) / faces["hard"], abs=1e-9)
    return data


def test_tiny_gt_reads_back(tiny_wider):
    root, faces = tiny_wider
    gt = load_ground_truth(root / "gt")
    assert gt.events == tuple(CHOSEN) and gt.num_images == 4
    assert {lv: gt.face_count(lv) for lv in LEVELS} == faces
    assert faces["easy"] < faces["medium"] < faces["hard"]


def test_zoo_eval_pytorch(tiny_wider):
    root, faces = tiny_wider
    cp = zoo("eval", "--widerface", root, "--gt", root / "gt", "--model", "rfb-320", "--json", check=0)
    _check_eval_json(cp, faces)
    assert cp.stderr.strip() == ""  # no progress bar when stderr is not a terminal


def test_zoo_eval_onnx_artifact(tiny_wider, export_dir):
    root, faces = tiny_wider
    folder, manifest, cp = export_dir("rfb-320", "onnx", "fp32", "decoded")
    assert cp.returncode == 0, cp.stderr[-2000:]
    art = folder / "onnx" / "rfb-320-decoded-fp32.onnx"
    cp = zoo("eval", "--widerface", root, "--gt", root / "gt", "--artifact", art, "--json", check=0)
    data = _check_eval_json(cp, faces)
    assert data["runtime"] == "onnxruntime"
    # the table, and a missing image: one clear line, exit 1
    cp = zoo("eval", "--widerface", root, "--gt", root / "gt", "--artifact", art, check=0)
    assert re.search(r"easy\s+1\.0000", cp.stdout) and "hard" in cp.stdout
    gone = root / "WIDER_val" / "images" / "1--Group" / "1_19.jpg"
    moved = gone.with_suffix(".bak")
    gone.rename(moved)
    try:
        cp = zoo("eval", "--widerface", root, "--gt", root / "gt", "--artifact", art, "--json")
    finally:
        moved.rename(gone)
    assert_clean_error(cp, "1 of 4", "missing", str(root / "WIDER_val" / "images"))


def test_zoo_eval_dynamic_artifact_at_another_size(tiny_wider, export_dir):
    """`zoo eval --input-size` with a dynamic artifact: the PyTorch model's APs at that size."""
    root, _ = tiny_wider
    folder, manifest, cp = export_dir("rfb-320", "onnx", "fp32", None, extra=("--dynamic",))
    assert cp.returncode == 0, cp.stderr[-2000:]
    art = folder / "onnx" / "rfb-320-raw-fp32-dynamic.onnx"
    ref = json.loads(zoo("eval", "--widerface", root, "--gt", root / "gt", "--model", "rfb-320", "--input-size", "640x480",
                         "--json", check=0).stdout)
    got = json.loads(zoo("eval", "--widerface", root, "--gt", root / "gt", "--artifact", art, "--input-size", "640x480",
                         "--json", check=0).stdout)
    assert got["input_size"] == [640, 480]
    for lv in LEVELS:
        assert got[lv] == pytest.approx(ref[lv], abs=1e-6), lv
    assert_clean_error(zoo("eval", "--widerface", root, "--gt", root / "gt", "--artifact", art, "--input-size", "641x480"),
                       "constraint")
