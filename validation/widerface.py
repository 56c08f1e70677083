"""WIDER FACE validation AP (Easy / Medium / Hard) by the official protocol.

The protocol is the one of the dataset's official MATLAB tools (``wider_eval.m``,
``read_pred.m``, ``norm_score.m``, ``evaluation.m``, ``boxoverlap.m``), re-written
here from their description:

1. Predictions are read for every image listed in ``wider_face_val.mat``; an
   image without predictions has none. Each image's predictions are sorted by
   score, descending (stable).
2. Scores are normalised over all predictions of all images:
   ``(s - min) / (max - min)`` (all 1.0 when every score is equal).
3. Per level (``wider_{easy,medium,hard}_val.mat``, ``gt_list``: the 1-based
   indices of the faces that count at that level) and per image with at least one
   gt box and one prediction: each prediction, in score order, takes the gt box of
   highest IoU (first on ties). If that IoU >= 0.5:
   - the box is not in the level's list -> the prediction is ignored (neither TP
     nor FP);
   - else the box is recalled the first time; a later prediction on the same box
     is a false positive.
   IoU is computed on inclusive pixel coordinates, widths ``x2 - x1 + 1``
   (``boxoverlap.m``), gt boxes being ``(x, y, x + w, y + h)``.
   Images whose faces are all outside the level are still evaluated (their
   predictions can only be ignored or false positives); only images with no gt
   box at all, or no prediction, are skipped, as in the official code. Every
   level face counts in the recall denominator, detected or not.
4. For 1000 thresholds ``t = 1 - k/1000`` (k = 1..1000) the proposals (scores
   >= t, not ignored) and recalled faces are summed over images; precision =
   recalled / proposals, recall = recalled / level faces.
5. AP = VOC all-point interpolation: area under the monotone precision envelope.
"""
from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.core.errors import ZooError
from zoo.core.images import read_bgr
from zoo.core.model.priors import auto_size
from zoo.core.model.processing import postprocess, preprocess
from zoo.core.runtime import Runner

LEVELS = ("easy", "medium", "hard")
GT_FILE = "wider_face_val.mat"
LEVEL_FILE = "wider_{}_val.mat"

# What the original project used to produce its published WIDER FACE figures
# (widerface_evaluate/evaluation_on_widerface.py): predictor candidate_size 800,
# predict(..., top_k=candidate_size / 2, prob_threshold=0.1), hard NMS at the
# predictor's IoU 0.3; boxes written as integers (floor x1, y1; ceil w, h) and
# scores with 3 decimals in the result files the official tools read.
SCORE_THRESHOLD = 0.1
IOU_THRESHOLD = 0.3
CANDIDATE_SIZE = 800
TOP_K = 400


@dataclass(frozen=True)
class ImageGT:
    event: str
    name: str  # file name without ".jpg"
    boxes: np.ndarray  # (n, 4) float64 x, y, w, h in pixels
    keep: dict[str, np.ndarray] = field(default_factory=dict)  # level -> 1-based int64 indices into boxes

    @property
    def key(self) -> tuple[str, str]:
        return (self.event, self.name)


@dataclass(frozen=True)
class GroundTruth:
    events: tuple[str, ...]
    images: tuple[ImageGT, ...]  # in the .mat order: event by event

    @property
    def num_images(self) -> int:
        return len(self.images)

    def face_count(self, level: str | None = None) -> int:
        """All annotated boxes (level None), or the faces that count at a level."""
        if level is None:
            return int(sum(len(im.boxes) for im in self.images))
        return int(sum(len(im.keep[level]) for im in self.images))


# --------------------------------------------------------------------------- reading .mat files
def _loadmat(path: Path) -> dict:
    try:
        import scipy.io  # heavy: only to read the .mat ground truth
    except ImportError:
        raise ZooError("reading the WIDER FACE ground truth needs scipy: pip install 'ultraface-zoo[report]'") from None
    if not path.is_file():
        raise ZooError(f"WIDER FACE ground-truth file not found: {path} (the folder must hold {GT_FILE} and "
                       f"{', '.join(LEVEL_FILE.format(lv) for lv in LEVELS)}, from the official eval_tools/ground_truth)")
    try:
        return scipy.io.loadmat(str(path))
    except Exception as e:  # noqa: BLE001 - scipy raises ValueError, MatReadError, TypeError, OSError...
        raise ZooError(f"cannot read {path}: not a valid MATLAB .mat file ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None


def _cells(value, path: Path, what: str) -> list:
    """A MATLAB cell array (as loaded: object ndarray) as a flat Python list."""
    arr = np.asarray(value)
    if arr.dtype != object:
        raise ZooError(f"{path} is not a WIDER FACE ground-truth file: {what} is not a cell array")
    return list(arr.reshape(-1))


def _string(value, path: Path, what: str) -> str:
    arr = np.asarray(value).reshape(-1)
    if arr.size != 1 or arr.dtype.kind not in "US":
        raise ZooError(f"{path} is not a WIDER FACE ground-truth file: {what} holds a non-string entry")
    return str(arr[0])


def _field(mat: dict, key: str, path: Path):
    if key not in mat:
        raise ZooError(f"{path} is not a WIDER FACE ground-truth file: no '{key}' variable")
    return mat[key]


def load_ground_truth(gt_dir: Path | str) -> GroundTruth:
    """Read the official val ground truth: ``wider_face_val.mat`` plus the three level files.

    Raises ZooError naming the file when one is missing, unreadable, or not
    shaped as the official files are (61 events for the real set; any count
    is accepted as long as the four files agree).
    """
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise ZooError(f"--gt {gt_dir} is not a folder (expected the official eval_tools/ground_truth folder holding {GT_FILE})")
    main_path = gt_dir / GT_FILE
    main = _loadmat(main_path)
    events = [_string(e, main_path, "event_list") for e in _cells(_field(main, "event_list", main_path), main_path, "event_list")]
    files = _cells(_field(main, "file_list", main_path), main_path, "file_list")
    bbxs = _cells(_field(main, "face_bbx_list", main_path), main_path, "face_bbx_list")
    if not (len(events) == len(files) == len(bbxs)) or not events:
        raise ZooError(f"{main_path} is corrupt: event_list, file_list and face_bbx_list differ in length "
                       f"({len(events)}, {len(files)}, {len(bbxs)})")
    names: list[list[str]] = []
    boxes: list[list[np.ndarray]] = []
    for ev, fl, bl in zip(events, files, bbxs):
        ev_names = [_string(f, main_path, f"file_list of {ev}") for f in _cells(fl, main_path, f"file_list of {ev}")]
        ev_boxes = []
        for b in _cells(bl, main_path, f"face_bbx_list of {ev}"):
            a = np.asarray(b)
            if a.size % 4 or (a.size and a.ndim == 2 and a.shape[1] != 4):
                raise ZooError(f"{main_path} is corrupt: a face box list of {ev} has shape {a.shape}, expected (n, 4)")
            ev_boxes.append(a.astype(np.float64).reshape(-1, 4))
        if len(ev_names) != len(ev_boxes):
            raise ZooError(f"{main_path} is corrupt: {ev} lists {len(ev_names)} images but {len(ev_boxes)} box lists")
        names.append(ev_names)
        boxes.append(ev_boxes)

    keep: dict[str, list[list[np.ndarray]]] = {}
    for level in LEVELS:
        path = gt_dir / LEVEL_FILE.format(level)
        mat = _loadmat(path)
        lists = _cells(_field(mat, "gt_list", path), path, "gt_list")
        if "event_list" in mat:
            lev_events = [_string(e, path, "event_list") for e in _cells(mat["event_list"], path, "event_list")]
            if lev_events != events:
                raise ZooError(f"{path} does not belong with {main_path}: its event list differs")
        if len(lists) != len(events):
            raise ZooError(f"{path} does not belong with {main_path}: {len(lists)} events in gt_list, {len(events)} in {GT_FILE}")
        per_event = []
        for ev, ev_boxes, cell in zip(events, boxes, lists):
            idx_lists = _cells(cell, path, f"gt_list of {ev}")
            if len(idx_lists) != len(ev_boxes):
                raise ZooError(f"{path} does not belong with {main_path}: {ev} has {len(idx_lists)} images in gt_list, {len(ev_boxes)} in {GT_FILE}")
            ev_keep = []
            for b, idx in zip(ev_boxes, idx_lists):
                k = np.asarray(idx).reshape(-1).astype(np.int64)  # stored as uint8/uint16: widen before any arithmetic
                if k.size and (k.min() < 1 or k.max() > len(b)):
                    raise ZooError(f"{path} is corrupt: a face index of {ev} is outside 1..{len(b)}")
                ev_keep.append(k)
            per_event.append(ev_keep)
        keep[level] = per_event

    images = []
    for i, ev in enumerate(events):
        for j, name in enumerate(names[i]):
            images.append(ImageGT(ev, name, boxes[i][j], {lv: keep[lv][i][j] for lv in LEVELS}))
    return GroundTruth(tuple(events), tuple(images))


# --------------------------------------------------------------------------- the protocol
def overlaps(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU (M, n) of corner boxes on inclusive pixel coordinates (width x2 - x1 + 1), as boxoverlap.m."""
    px1, py1, px2, py2 = (pred[:, i][:, None] for i in range(4))
    gx1, gy1, gx2, gy2 = (gt[:, i][None, :] for i in range(4))
    iw = np.minimum(px2, gx2) - np.maximum(px1, gx1) + 1
    ih = np.minimum(py2, gy2) - np.maximum(py1, gy1) + 1
    inter = iw * ih
    union = (px2 - px1 + 1) * (py2 - py1 + 1) + (gx2 - gx1 + 1) * (gy2 - gy1 + 1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        o = inter / union
    o[(iw <= 0) | (ih <= 0) | ~np.isfinite(o)] = 0.0
    return o


def _best_matches(pred: np.ndarray, gt_xywh: np.ndarray, iou_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction: the gt box of highest IoU (first on ties) and whether that IoU >= iou_thresh."""
    gt = gt_xywh.copy()
    gt[:, 2:] += gt[:, :2]
    ov = overlaps(pred[:, :4], gt)
    best = ov.argmax(axis=1)
    return best, ov[np.arange(len(pred)), best] >= iou_thresh


def _image_eval(best: np.ndarray, matched: np.ndarray, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image at one level, predictions in score order -> (running count of recalled level faces, is-proposal).

    A prediction matched to a face outside the level is ignored (not a proposal);
    one matched to a level face recalls it the first time and is a false positive after.
    """
    on_counted = counted[best]
    proposal = ~(matched & ~on_counted)
    hits = np.flatnonzero(matched & on_counted)
    first = np.zeros(len(best), dtype=bool)
    if hits.size:
        _, first_pos = np.unique(best[hits], return_index=True)
        first[hits[first_pos]] = True
    return np.cumsum(first), proposal


def _image_pr(n_at: np.ndarray, recalled: np.ndarray, proposal: np.ndarray) -> np.ndarray:
    """(T, 2): proposals and recalled faces among the ``n_at[t]`` best predictions, per threshold t."""
    cum_prop = np.cumsum(proposal)
    out = np.zeros((len(n_at), 2))
    has = n_at > 0
    last = n_at[has] - 1
    out[has, 0] = cum_prop[last]
    out[has, 1] = recalled[last]
    return out


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP: area under the monotone precision envelope."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _prepared(predictions: dict, gt: GroundTruth) -> list[np.ndarray | None]:
    """Per gt image: its predictions sorted by score (desc), scores normalised over all gt images."""
    per_image: list[np.ndarray | None] = []
    for im in gt.images:
        p = predictions.get(im.key)
        if p is None:
            per_image.append(None)
            continue
        a = np.array(p, dtype=np.float64, copy=True)
        if a.size == 0:
            per_image.append(None)
            continue
        if a.ndim != 2 or a.shape[1] != 5:
            raise ZooError(f"predictions for {im.event}/{im.name} must be (M, 5) [x1, y1, x2, y2, score], got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ZooError(f"predictions for {im.event}/{im.name} hold NaN or Inf")
        per_image.append(a[np.argsort(-a[:, 4], kind="stable")])
    present = [a for a in per_image if a is not None]
    if present:
        lo = min(float(a[:, 4].min()) for a in present)
        hi = max(float(a[:, 4].max()) for a in present)
        for a in present:
            a[:, 4] = (a[:, 4] - lo) / (hi - lo) if hi > lo else 1.0
    return per_image


def pr_curves(predictions: dict, gt: GroundTruth, iou_thresh: float = 0.5, thresh_num: int = 1000) -> dict[str, dict]:
    """Per level: {"precision": (T,), "recall": (T,), "faces": n} over thresholds 1 - k/T, k = 1..T."""
    per_image = _prepared(predictions, gt)
    thresholds = 1.0 - np.arange(1, thresh_num + 1) / thresh_num
    acc = {lv: np.zeros((thresh_num, 2)) for lv in LEVELS}
    faces = {lv: 0 for lv in LEVELS}
    for im, pred in zip(gt.images, per_image):
        for lv in LEVELS:
            faces[lv] += len(im.keep[lv])
        if pred is None or len(im.boxes) == 0:
            continue
        best, matched = _best_matches(pred, im.boxes, iou_thresh)
        # the official "last prediction with score >= t": scores are sorted descending
        n_at = np.searchsorted(-pred[:, 4], -thresholds, side="right")
        for lv in LEVELS:
            counted = np.zeros(len(im.boxes), dtype=bool)
            counted[im.keep[lv] - 1] = True
            recalled, proposal = _image_eval(best, matched, counted)
            acc[lv] += _image_pr(n_at, recalled, proposal)
    out = {}
    for lv in LEVELS:
        props, tps = acc[lv][:, 0], acc[lv][:, 1]
        precision = np.divide(tps, props, out=np.zeros_like(tps), where=props > 0)
        recall = tps / faces[lv] if faces[lv] else np.zeros_like(tps)
        out[lv] = {"precision": precision, "recall": recall, "faces": faces[lv]}
    return out


def evaluate(predictions: dict, gt: GroundTruth, iou_thresh: float = 0.5, thresh_num: int = 1000) -> dict[str, float]:
    """{"easy": ap, "medium": ap, "hard": ap} by the official protocol (see the module docstring).

    ``predictions``: {(event, image name without extension): (M, 5) array
    [x1, y1, x2, y2, score] in original-image pixels}. Images of ``gt`` that
    are absent (or have an empty array) have no detections; keys that are not
    in ``gt`` are not used. A level without any face gets NaN.
    """
    curves = pr_curves(predictions, gt, iou_thresh, thresh_num)
    return {lv: (voc_ap(c["recall"], c["precision"]) if c["faces"] else math.nan) for lv, c in curves.items()}


# --------------------------------------------------------------------------- running a model
def images_root(widerface_dir: Path | str, gt: GroundTruth) -> Path:
    """The folder holding ``<event>/<name>.jpg``: DIR/WIDER_val/images, DIR/images or DIR itself."""
    d = Path(widerface_dir)
    candidates = [d / "WIDER_val" / "images", d / "images", d]
    for c in candidates:
        if any((c / ev).is_dir() for ev in gt.events):
            return c
    raise ZooError(f"no WIDER FACE val images found under {d}: expected {d / 'WIDER_val' / 'images'}/<event>/<name>.jpg "
                   f"(e.g. {gt.events[0]}/{gt.images[0].name}.jpg); also looked in {d / 'images'} and {d}")


def _quantize_like_original(dets: np.ndarray) -> np.ndarray:
    """The original's result files: floor x1, y1; ceil w, h; score min(s, 1) with 3 decimals."""
    if not len(dets):
        return dets
    x1 = np.floor(dets[:, 0])
    y1 = np.floor(dets[:, 1])
    w = np.ceil(dets[:, 2] - dets[:, 0])
    h = np.ceil(dets[:, 3] - dets[:, 1])
    s = np.array([float(f"{min(v, 1.0):.3f}") for v in dets[:, 4]])
    return np.stack([x1, y1, x1 + w, y1 + h, s], axis=1)


def predict_folder(
    widerface_dir: Path | str,
    gt: GroundTruth,
    runner: Runner,
    *,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
    candidate_size: int = CANDIDATE_SIZE,
    top_k: int = TOP_K,
    quantize: bool = True,
    progress: bool = False,
    input_size: tuple[int, int] | str | None = None,
) -> dict[tuple[str, str], np.ndarray]:
    """Run ``runner`` on every image of ``gt`` (one at a time) -> predictions for ``evaluate``.

    Images are ``<root>/<event>/<name>.jpg`` with root found by ``images_root``.
    Every image listed in the ground truth must be present and readable (the
    official AP is over the whole val set): otherwise ZooError before any
    inference, with the count and where it looked. Post-processing is ours
    (``zoo.core.model.processing.postprocess``) with the original's evaluation settings by
    default; ``quantize`` rounds boxes and scores as the original's result files
    did. The runner is entered (``with runner:``) unless it already is. ``input_size``: the network size
    (default: the runner's own), a (W, H) a dynamic artifact allows, or "auto" (each photo's aspect ratio,
    the long side at the trained long side).
    """

    root = images_root(widerface_dir, gt)
    paths = [root / im.event / f"{im.name}.jpg" for im in gt.images]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ZooError(f"{len(missing)} of {len(paths)} WIDER FACE val images are missing under {root} "
                       f"(first: {missing[0].relative_to(root)}); the AP is defined over every image of the ground truth")
    meta = runner.meta
    width, height = meta.input_size if input_size in (None, "auto") else input_size
    bar = None
    if progress:
        from tqdm import tqdm  # optional nicety: only on a terminal

        bar = tqdm(total=len(paths), file=sys.stderr, unit="img", desc="WIDER FACE val", leave=False)
    preds: dict[tuple[str, str], np.ndarray] = {}
    ctx = contextlib.nullcontext(runner) if getattr(runner, "_active", False) else runner
    try:
        with ctx:
            for im, path in zip(gt.images, paths):
                img = read_bgr(path)
                if img is None:
                    raise ZooError(f"cannot read image {path}")
                h, w = img.shape[:2]
                if input_size == "auto":
                    width, height = auto_size(w, h, tuple(meta.input_size))
                out = runner.infer(preprocess(img, width, height))
                dets = postprocess(out["scores"][0], out["boxes"][0], w, h, meta.labels,
                                   score_threshold, iou_threshold, candidate_size, top_k)
                arr = np.array([[*d.box, d.score] for d in dets], dtype=np.float64).reshape(-1, 5)
                preds[im.key] = _quantize_like_original(arr) if quantize else arr
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return preds
