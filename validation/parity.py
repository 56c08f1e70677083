"""Parity of an artifact against the PyTorch reference: tensors, invariants, detections.

Pass rules per precision (the tiers are written into every result):
- fp32: every output within atol + rtol*|ref|; every reference detection
  matched at IoU >= 0.99 with no extras.
- fp16: outputs within a looser tier (raw offsets, which are pre-exp regression values up to ~10,
  get 0.25; the decoded boxes they give stay within 0.02); >= 99.5% of detections matched at IoU >= 0.9,
  <= 0.5% extra; strictly (no margin) >= 99% kept, <= 0.5% extra.
- int8: tensors reported, not gated; >= 99% of detections matched at IoU >= 0.5, <= 1% extra; strictly
  (no margin) >= 97% kept, <= 1% extra.
fp16 and int8 artifacts are also proven on the shift gate (`shift`: mosaics of the parity photos, the
counts pooled over the layouts, under the same tier), recorded as ``result["shift"]``.
An end-to-end NMS graph's one output, the detection rows, is compared as a tensor with the reference's
rows after the same NMS (``nms_rows``, ``compare_rows``), under the tier's boxes and scores tolerances.
Detections are matched with a score margin on the other side (`match`): a reference face is kept
when the artifact finds it at IoU >= min_iou with a score of at least threshold - score_margin, and
an artifact detection is extra when the reference has nothing there down to threshold -
score_margin. The strict counts (no margin) are recorded too (``borderline_missed``,
``borderline_extra``; ``strict`` in the totals) and gated for fp16 and int8 (``strict_min_recall``,
``strict_max_extra``).

Every result carries its evidence (``result["evidence"]``): the images, the reference faces
counted (matched + missed) and how many of them fall in each size bucket (face height in pixels
at the original image's scale: "<16", "16-64", ">64"), the gate images by sha256, and for int8
the calibration images by sha256 with the ones both sets share (``overlap``). Evidence is strong
when at least ``min_evidence`` reference faces stand behind the verdict. A detection tier on a
handful of faces says little (one missed face of three is 67% recall), so an fp16 or int8 verdict
on weak evidence is reported as such (`weak_evidence`); fp32 is gated on every output tensor and is
not subject to that rule. ``result["detections"]["by_size"]`` splits the counts the same way (an
extra detection by its own box height).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from zoo.core.manifest import base_precision
from zoo.core.shift import LAYOUTS, VERSION as SHIFT_VERSION
from zoo.core.model.processing import SOFTMAX_TOL, Detection, iou_matrix, postprocess, softmax_problem

TIERS = {
    "fp32": {"atol": {"scores": 1e-4, "boxes": 1e-4, "locations": 5e-4}, "rtol": 1e-4, "min_iou": 0.99,
             "min_recall": 1.0, "max_extra": 0.0, "sum_tol": SOFTMAX_TOL["fp32"], "score_margin": 1e-3,
             "strict_min_recall": None, "strict_max_extra": None},  # fp32: every tensor is gated instead
    "fp16": {"atol": {"scores": 2e-2, "boxes": 2e-2, "locations": 2.5e-1}, "rtol": 1e-2, "min_iou": 0.9,
             "min_recall": 0.995, "max_extra": 0.005, "sum_tol": SOFTMAX_TOL["fp16"], "score_margin": 1e-2,
             "strict_min_recall": 0.99, "strict_max_extra": 0.005},
    "int8": {"atol": None, "rtol": None, "min_iou": 0.5,
             "min_recall": 0.99, "max_extra": 0.01, "sum_tol": SOFTMAX_TOL["int8"], "score_margin": 0.05,
             "strict_min_recall": 0.97, "strict_max_extra": 0.01},
}
#: the post-processing of both sides. No pre-NMS cut (the original's candidate_size=200, which
#: `zoo detect` keeps): in a crowd, the 200 best boxes end inside a band of near-equal scores, so any
#: perturbation reshuffles which faces survive the cut -- rfb-640's weight-only int8 on a photo with
#: 82 faces lost 1 face and gained 3, all scored >= 0.92, through the cut alone, and none without it.
DETECT = {"score_threshold": 0.7, "iou_threshold": 0.3, "candidate_size": 1_000_000}
SIZE_BUCKETS = ("<16", "16-64", ">64")  # face height in pixels at the original image's scale
MIN_EVIDENCE = 250  # reference faces behind a strong verdict (the CLI's --min-evidence)
EVIDENCE_RULED = ("fp16", "int8")  # precisions whose verdict rests on detections only (fp32: every tensor too)
# what a recorded verdict depends on besides the artifact: an artifact proven under other rules is rebuilt
#: the shift gate (``result["shift"]``): every fp16 and int8 artifact proven again on mosaics of the parity
#: photos (zoo.core.shift), its detections pooled over the layouts under the same tier. Its evidence is strong
#: from SHIFT_EVIDENCE_SHARE of --min-evidence on: the mosaics hold the same photos at a half and a third of
#: their size, where PyTorch itself finds fewer faces (rfb-320: 235 on the mosaics of the 16 pinned photos
#: against 291 on the photos, slim-320 220 against 302)
SHIFT_PRECISIONS = ("fp16", "int8")
SHIFT_EVIDENCE_SHARE = 0.5
RULES = {"tiers": TIERS, "detect": DETECT, "size_buckets": SIZE_BUCKETS, "evidence": 1, "matching": 2,
         "shift": {"layouts": list(LAYOUTS), "mosaics": SHIFT_VERSION, "precisions": list(SHIFT_PRECISIONS), "evidence_share": SHIFT_EVIDENCE_SHARE,
                   "pooled": True}}


#: how a detection-tier failure starts in ``result["failures"]`` (the others are tensors and invariants)
DETECTION_FAILURE = "detections:"


def strict_counts(counts: dict) -> dict:
    """The strict counts (no score margin: both sides thresholded at 0.7) of margin-rule ``counts`` that
    carry ``borderline_missed`` and ``borderline_extra``: matched, missed, extra, recall, extra_rate."""
    ref_n = max(counts["reference"], 1)
    matched = counts["matched"] - counts.get("borderline_missed", 0)
    extra = counts["extra"] + counts.get("borderline_extra", 0)
    return {"matched": matched, "missed": counts["reference"] - matched, "extra": extra,
            "recall": matched / ref_n if counts["reference"] else 1.0, "extra_rate": extra / ref_n}


def detection_verdict(counts: dict, tier: dict) -> bool:
    """Whether ``counts`` (matched, reference, extra, and for the strict rule borderline_missed and
    borderline_extra: pooled over images, sizes or layouts) meet the tier's detection rule: the margin
    rule (min_recall, max_extra) and, where the tier has one, the strict rule (strict_min_recall,
    strict_max_extra). ``recall``, ``extra_rate`` and ``strict`` are set in ``counts``."""
    ref_n = max(counts["reference"], 1)
    counts["recall"] = counts["matched"] / ref_n if counts["reference"] else 1.0
    counts["extra_rate"] = counts["extra"] / ref_n
    counts["strict"] = strict_counts(counts)
    ok = counts["recall"] >= tier["min_recall"] and counts["extra_rate"] <= tier["max_extra"]
    if tier.get("strict_min_recall") is not None:
        ok = ok and counts["strict"]["recall"] >= tier["strict_min_recall"]
    if tier.get("strict_max_extra") is not None:
        ok = ok and counts["strict"]["extra_rate"] <= tier["strict_max_extra"]
    return ok


def detection_failure(counts: dict, tier: dict, where: str = "") -> str:
    """The one line saying how ``counts`` miss the tier (after detection_verdict set their rates)."""
    st = counts["strict"]
    strict = ""
    if tier.get("strict_min_recall") is not None:
        strict = (f"; strict (no margin) {st['matched']}/{counts['reference']} kept ({100 * st['recall']:.2f}%, "
                  f">= {100 * tier['strict_min_recall']:g}% required), {st['extra']} extra "
                  f"({100 * st['extra_rate']:.2f}%, <= {100 * tier['strict_max_extra']:g}%)")
    return (f"{DETECTION_FAILURE} {where}{counts['matched']}/{counts['reference']} matched at IoU >= {tier['min_iou']} "
            f"({100 * counts['recall']:.2f}%, >= {100 * tier['min_recall']:g}% required), {counts['extra']} extra "
            f"({100 * counts['extra_rate']:.2f}%, <= {100 * tier['max_extra']:g}%){strict}")


def size_bucket(box) -> str:
    """The size bucket of a corner box (x1, y1, x2, y2) in original-image pixels, by its height."""
    h = float(box[3]) - float(box[1])
    return "<16" if h < 16 else ">64" if h > 64 else "16-64"


def _bucket_counts() -> dict:
    return {b: {"reference": 0, "matched": 0, "missed": 0, "extra": 0} for b in SIZE_BUCKETS}


@dataclass
class ParityInput:
    x: np.ndarray  # (N, 3, H, W) preprocessed images
    names: list[str]  # image file names
    sizes: list[tuple[int, int]]  # original (W, H)
    sha256: list[str] = field(default_factory=list)  # of each image file (the gate, recorded by hash)


def overlap(gate: list[dict], calibration: list[dict]) -> list[str]:
    """The names of the gate images whose content (sha256) is also among the calibration images."""
    calib = {c.get("sha256") for c in calibration} - {None}
    return sorted({g["name"] for g in gate if g.get("sha256") in calib})


def evidence(by_size: dict, images: int, gate: list[dict], min_evidence: int = MIN_EVIDENCE,
             calibration: list[dict] | None = None) -> dict:
    """What a verdict rests on: images, reference faces (in total and per size bucket), the gate by sha256,
    and with ``calibration`` (int8) the calibration set by sha256 and the overlap of the two."""
    faces = sum(c["reference"] for c in by_size.values())
    ev = {"images": images, "faces": faces, "by_size": {b: by_size[b]["reference"] for b in SIZE_BUCKETS},
          "min_faces": int(min_evidence), "strong": faces >= min_evidence, "gate": gate}
    if calibration is not None:
        ev["calibration"] = calibration
        ev["overlap"] = overlap(gate, calibration)
    return ev


def _graded(ev: dict, min_faces: int) -> dict:
    return {**ev, "min_faces": int(min_faces), "strong": ev.get("faces", 0) >= min_faces}


def grade(result: dict, min_evidence: int) -> dict:
    """``result`` with its evidence (and its shift gate's) graded against ``min_evidence`` faces (a copy; a
    result without evidence as is)."""
    ev = (result or {}).get("evidence")
    if not ev:
        return result
    out = {**result, "evidence": _graded(ev, min_evidence)}
    sh = result.get("shift")
    if isinstance(sh, dict) and isinstance(sh.get("evidence"), dict):
        out["shift"] = {**sh, "evidence": _graded(sh["evidence"], shift_min_evidence(min_evidence))}
    return out


def weak_evidence(result: dict | None, min_evidence: int) -> bool:
    """Whether an fp16/int8 verdict rests on fewer than ``min_evidence`` reference faces (or on no recorded
    evidence at all), or its shift gate on fewer than shift_min_evidence(min_evidence). fp32 results never
    are: they are gated on every output tensor."""
    if not result or base_precision(result.get("precision", "")) not in EVIDENCE_RULED:
        return False
    if (result.get("evidence") or {}).get("faces", 0) < min_evidence:
        return True
    sh = result.get("shift")
    return isinstance(sh, dict) and (sh.get("evidence") or {}).get("faces", 0) < shift_min_evidence(min_evidence)


def tensor_stats(ref: np.ndarray, got: np.ndarray) -> dict:
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    rel = diff / np.maximum(np.abs(ref.astype(np.float64)), 1e-6)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return {"max_abs": float(diff.max()), "max_rel": float(rel.max()), "mean_abs": float(diff.mean()), "worst_image": int(worst[0])}


def invariants(out: dict, prior_count: int, precision: str) -> list[str]:
    """The output invariants of ``precision``'s tier: finite, the model's prior count, score rows softmaxed
    (zoo.core.model.processing.softmax_problem: the definition `zoo detect`'s probe uses too), boxes ordered."""
    fails = []
    for name, a in out.items():
        if not np.isfinite(a).all():
            fails.append(f"{name} has NaN or Inf")
    s, b = out["scores"], out["boxes"]
    if s.shape[1] != prior_count or b.shape[1] != prior_count:
        fails.append(f"prior count {s.shape[1]} != model's {prior_count}")
    soft = softmax_problem(s, base_precision(precision))
    if soft:
        fails.append(soft)
    if (b[..., 2] < b[..., 0] - 1e-6).any() or (b[..., 3] < b[..., 1] - 1e-6).any():
        fails.append("some boxes have x1 > x2 or y1 > y2")
    return fails


def _pairs(a, b, min_iou: float) -> dict[int, int]:
    """Greedy one-to-one matching of detections ``a`` to ``b`` by IoU (best pairs first), within each
    label: {index in a: index in b}."""
    out: dict[int, int] = {}
    for label in sorted({d.label for d in a} | {d.label for d in b}):
        ia = [i for i, d in enumerate(a) if d.label == label]
        ib = [j for j, d in enumerate(b) if d.label == label]
        m = iou_matrix(np.array([a[i].box for i in ia]).reshape(-1, 4), np.array([b[j].box for j in ib]).reshape(-1, 4))
        cand = sorted(((m[x, y], x, y) for x in range(len(ia)) for y in range(len(ib)) if m[x, y] >= min_iou), reverse=True)
        used_a, used_b = set(), set()
        for _, x, y in cand:
            if x in used_a or y in used_b:
                continue
            used_a.add(x)
            used_b.add(y)
            out[ia[x]] = ib[y]
    return out


def pairing(ref_dets, got_dets, min_iou: float, threshold: float) -> tuple[list, list, dict[int, int], dict[int, int]]:
    """The pairs `match` counts: ``(r_hi, g_hi, kept, seen)`` with ``r_hi``/``g_hi`` the detections of
    each side at ``threshold`` or more, ``kept`` {index in r_hi: index in got_dets} (a reference face
    the artifact has, down to the margin its ``got_dets`` were cut at) and ``seen`` {index in g_hi:
    index in ref_dets} (an artifact detection the reference has); the rest are missed and extra."""
    r_hi = [d for d in ref_dets if d.score >= threshold]
    g_hi = [d for d in got_dets if d.score >= threshold]
    return r_hi, g_hi, _pairs(r_hi, got_dets, min_iou), _pairs(g_hi, ref_dets, min_iou)


def faces(ref_dets, got_dets, tier: dict) -> dict:
    """The faces of one photo as `match` judges them, box by box (what `zoo report` draws):
    ``kept`` [(reference, artifact)], ``missed`` [reference], ``extra`` [artifact], and ``borderline``
    the kept ones only the tier's score margin keeps (the artifact's score under the threshold)."""
    threshold = DETECT["score_threshold"]
    r_hi, g_hi, kept, seen = pairing(ref_dets, got_dets, tier["min_iou"], threshold)
    pairs = [(r_hi[i], got_dets[kept[i]]) for i in sorted(kept)]
    return {"kept": pairs, "missed": [d for i, d in enumerate(r_hi) if i not in kept],
            "extra": [d for j, d in enumerate(g_hi) if j not in seen],
            "borderline": [g for _, g in pairs if g.score < threshold]}


def match(ref_dets, got_dets, min_iou: float, threshold: float, margin: float) -> dict:
    """Match the reference's detections with the artifact's, with a score margin on the other side.

    ``ref_dets`` and ``got_dets`` are the detections down to ``threshold - margin``. A reference face
    (score >= threshold) is *matched* when the artifact has a box over it at IoU >= ``min_iou`` with a
    score of at least ``threshold - margin``, else *missed*; an artifact detection (>= threshold) is
    *extra* when the reference has no box over it down to ``threshold - margin``. So a face whose
    score moves from 0.72 to 0.69 is kept (it was seen, a hair under the threshold), a face the
    artifact loses is missed wherever its reference score lies. The strict counts (no margin at all,
    what a user thresholding both at ``threshold`` would see) are ``borderline_missed`` (kept only
    under the threshold) and ``borderline_extra`` (found only under the threshold by the reference)
    on top of missed and extra; ``borderline`` is their sum.
    """
    counts = {"reference": 0, "matched": 0, "missed": 0, "extra": 0, "borderline": 0,
              "borderline_missed": 0, "borderline_extra": 0, "min_iou": None, "max_score_change": 0.0}
    by_size = _bucket_counts()
    r_hi, g_hi, kept, seen = pairing(ref_dets, got_dets, min_iou, threshold)
    min_seen = 1.0
    for i, d in enumerate(r_hi):
        b = by_size[size_bucket(d.box)]
        counts["reference"] += 1
        b["reference"] += 1
        if i in kept:
            g = got_dets[kept[i]]
            counts["matched"] += 1
            b["matched"] += 1
            iou = float(iou_matrix(np.array([d.box]), np.array([g.box]))[0, 0])
            min_seen = min(min_seen, iou)
            counts["max_score_change"] = max(counts["max_score_change"], abs(d.score - g.score))
            if g.score < threshold:
                counts["borderline_missed"] += 1
        else:
            counts["missed"] += 1
            b["missed"] += 1
    for j, d in enumerate(g_hi):
        if j not in seen:
            counts["extra"] += 1
            by_size[size_bucket(d.box)]["extra"] += 1
        elif ref_dets[seen[j]].score < threshold:
            counts["borderline_extra"] += 1
    counts["borderline"] = counts["borderline_missed"] + counts["borderline_extra"]
    counts["min_iou"] = round(min_seen, 6) if counts["matched"] else None
    counts["by_size"] = by_size
    return counts


def detections_from_rows(rows: np.ndarray, w: int, h: int, labels) -> list:
    """(M, 6) rows x1, y1, x2, y2 (normalised), score, class id -> Detection objects in pixels."""
    scale = np.array([w, h, w, h], dtype=np.float64)
    return [Detection(tuple((r[:4] * scale).tolist()), float(r[4]), labels[int(r[5])] if int(r[5]) < len(labels) else str(int(r[5])), int(r[5]))
            for r in np.asarray(rows, dtype=np.float64)]


#: an end-to-end graph's NonMaxSuppression keeps at most this many boxes per class (exporters/onnx add_nms)
NMS_MAX_PER_CLASS = 200
#: an end-to-end graph's verdict: its rows against the reference's after the same NMS (recorded verdicts of
#: the earlier rule, which compared no tensor, are not reused)
RULES["nms_head"] = {"compared": "rows after the same NMS", "max_per_class": NMS_MAX_PER_CLASS}


def _onnx_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner box ``a`` (4,) with ``b`` (M, 4) as ONNX NonMaxSuppression computes it (no epsilon;
    an empty box overlaps nothing)."""
    ax1, ax2 = min(a[0], a[2]), max(a[0], a[2])
    ay1, ay2 = min(a[1], a[3]), max(a[1], a[3])
    bx1, bx2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    by1, by2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    area_a, area_b = (ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1)
    union = area_a + area_b - inter
    ok = (area_a > 0) & (area_b > 0) & (inter > 0)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def nms_rows(scores: np.ndarray, boxes: np.ndarray, score_threshold: float, iou_threshold: float,
             max_per_class: int = NMS_MAX_PER_CLASS) -> np.ndarray:
    """One image's (P, K) scores and (P, 4) normalised corner boxes through the NMS an end-to-end graph
    runs (ONNX NonMaxSuppression): per non-background class, the boxes scoring above the threshold by
    decreasing score, each dropped when its IoU with one kept before exceeds ``iou_threshold``, at most
    ``max_per_class``. Rows (M, 6): x1, y1, x2, y2, score, class id, as the graph's ``detections``."""
    rows = []
    thr = np.float32(score_threshold)
    for cls in range(1, scores.shape[1]):
        s = scores[:, cls]
        cand = np.flatnonzero(s > thr)
        cand = cand[np.argsort(-s[cand], kind="stable")]
        kept: list[int] = []
        for i in cand:
            if len(kept) >= max_per_class:
                break
            if kept and (_onnx_iou(boxes[i], boxes[kept]) > iou_threshold).any():
                continue
            kept.append(int(i))
        rows += [[*boxes[i].tolist(), float(s[i]), float(cls)] for i in kept]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def compare_rows(ref_rows: list, got_rows: list, data: ParityInput, labels, tier: dict) -> dict:
    """The end-to-end graph's one output, ``detections`` (per image (M, 6) rows), against the reference's
    rows after the same NMS (``nms_rows``): rows paired one to one (same class, IoU >= 0.5), each paired
    value within ``atol + rtol x |ref|`` (the tier's boxes tolerance on the corners, its scores tolerance
    on the score), and every row paired, but for a row whose score lies within the scores tolerance of the
    threshold (the other side may hold it a hair under). Stats as ``tensor_stats`` plus ``rows``; with a
    gated tier, ``passed`` and, when it fails, ``failure``."""
    thr = DETECT["score_threshold"]
    gated = tier["atol"] is not None
    diffs, rels, worst, worst_d, fails = [], [], 0, -1.0, []
    counts = {"reference": 0, "artifact": 0, "paired": 0, "unpaired": 0, "borderline": 0}
    for i, (w, h) in enumerate(data.sizes):
        r, g = np.asarray(ref_rows[i], np.float64).reshape(-1, 6), np.asarray(got_rows[i], np.float64).reshape(-1, 6)
        counts["reference"] += len(r)
        counts["artifact"] += len(g)
        pairs = _pairs(detections_from_rows(r, w, h, labels), detections_from_rows(g, w, h, labels), 0.5)
        for a, b in pairs.items():
            d = np.abs(g[b, :5] - r[a, :5])
            diffs.append(d)
            rels.append(d / np.maximum(np.abs(r[a, :5]), 1e-6))
            if d.max() > worst_d:
                worst, worst_d = i, float(d.max())
            if gated:
                bound = np.array([tier["atol"]["boxes"]] * 4 + [tier["atol"]["scores"]]) + tier["rtol"] * np.abs(r[a, :5])
                if (d > bound).any():
                    fails.append(f"output 'detections' diverges: max abs {d.max():.3g} (tolerance boxes "
                                 f"{tier['atol']['boxes']:g}, scores {tier['atol']['scores']:g}) on image {data.names[i]}")
        counts["paired"] += len(pairs)
        near = (tier["atol"]["scores"] + tier["rtol"] * thr) if gated else tier["score_margin"]
        alone = [r[a] for a in range(len(r)) if a not in pairs] + [g[b] for b in range(len(g)) if b not in set(pairs.values())]
        for row in alone:
            if row[4] <= thr + near:
                counts["borderline"] += 1
            else:
                counts["unpaired"] += 1
                if gated:
                    fails.append(f"output 'detections' diverges: a detection (score {row[4]:.3f}) on image "
                                 f"{data.names[i]} has no counterpart on the other side")
    d = np.concatenate(diffs) if diffs else np.zeros((0, 5))
    out = {"max_abs": float(d.max()) if d.size else 0.0, "max_rel": float(np.concatenate(rels).max()) if rels else 0.0,
           "mean_abs": float(d.mean()) if d.size else 0.0, "worst_image": worst, "rows": counts}
    if gated:
        out["passed"] = not fails
        if fails:
            out["failure"] = fails[0]
    return out


def compare(ref: dict, got: dict, data: ParityInput, labels, prior_count: int, precision: str,
            min_evidence: int = MIN_EVIDENCE, calibration: list[dict] | None = None) -> dict:
    """The full parity result of one artifact's outputs against the reference outputs.

    ``calibration`` (int8: ``[{"name", "sha256"}]`` of the calibration images) is recorded in the
    evidence with its overlap with the gate images (``data``).
    """
    tier = TIERS[base_precision(precision)]  # a flavour such as "int8-io" has its precision's tier
    result: dict = {"precision": precision, "tier": tier, "images": len(data.names), "outputs": {}, "failures": []}
    for name in ("scores", "boxes", "locations"):
        if name not in ref or name not in got:
            continue
        st = tensor_stats(ref[name], got[name])
        if tier["atol"] is not None:
            a = tier["atol"][name]
            ok = bool(np.all(np.abs(got[name] - ref[name]) <= a + tier["rtol"] * np.abs(ref[name])))
            st["passed"] = ok
            if not ok:
                result["failures"].append(
                    f"output {name!r} diverges: max abs {st['max_abs']:.3g} (tolerance {a:g}) on image {data.names[st['worst_image']]}"
                )
        result["outputs"][name] = st
    nms = "detections" in got  # an end-to-end graph: its one output is final detections
    if nms:
        # its tensor: the rows, against the reference's rows after the same NMS (the graph's thresholds)
        ref_rows = [nms_rows(ref["scores"][i], ref["boxes"][i], DETECT["score_threshold"], DETECT["iou_threshold"])
                    for i in range(len(data.names))]
        st = compare_rows(ref_rows, got["detections"], data, labels, tier)
        if st.get("passed") is False:
            result["failures"].append(st.pop("failure"))
        result["outputs"]["detections"] = st
        result["invariants"] = {"passed": True, "failures": [], "note": "end-to-end NMS graph: detections only"}
    else:
        inv = invariants(got, prior_count, precision)
        result["invariants"] = {"passed": not inv, "failures": inv}
        result["failures"] += [f"invariant: {f}" for f in inv]
    totals = {"reference": 0, "matched": 0, "missed": 0, "extra": 0, "borderline": 0, "borderline_missed": 0,
              "borderline_extra": 0, "min_iou": None, "max_score_change": 0.0}
    by_size = _bucket_counts()
    per_image = []
    for i, (name, (w, h)) in enumerate(zip(data.names, data.sizes)):
        low = {**DETECT, "score_threshold": DETECT["score_threshold"] - tier["score_margin"]}
        if nms:  # the reference through the graph's NMS; thresholds are baked into the graph: no margin on its side
            rd = detections_from_rows(nms_rows(ref["scores"][i], ref["boxes"][i], low["score_threshold"],
                                               DETECT["iou_threshold"]), w, h, labels)
            gd = detections_from_rows(got["detections"][i], w, h, labels)
        else:
            rd = postprocess(ref["scores"][i], ref["boxes"][i], w, h, labels, **low)
            gd = postprocess(got["scores"][i], got["boxes"][i], w, h, labels, **low)
        c = match(rd, gd, tier["min_iou"], DETECT["score_threshold"], tier["score_margin"])
        for b, counts in c.pop("by_size").items():
            for k, v in counts.items():
                by_size[b][k] += v
        per_image.append({"image": name, **c})
        for k in ("reference", "matched", "missed", "extra", "borderline", "borderline_missed", "borderline_extra"):
            totals[k] += c[k]
        totals["max_score_change"] = max(totals["max_score_change"], c["max_score_change"])
        if c["min_iou"] is not None:
            totals["min_iou"] = c["min_iou"] if totals["min_iou"] is None else min(totals["min_iou"], c["min_iou"])
    det_ok = detection_verdict(totals, tier)  # sets recall, extra_rate and strict
    if not det_ok:
        worst = max(per_image, key=lambda c: c["missed"] + c["extra"] + c["borderline"])
        result["failures"].append(detection_failure(totals, tier) + f" (worst image {worst['image']}: {worst['missed']} missed, "
                                  f"{worst['extra']} extra, {worst['borderline']} borderline)")
    totals["passed"] = det_ok
    totals["by_size"] = by_size
    result["detections"] = totals
    gate = [{"name": n, "sha256": data.sha256[i] if i < len(data.sha256) else None} for i, n in enumerate(data.names)]
    result["evidence"] = evidence(by_size, len(data.names), gate, min_evidence, calibration)
    result["per_image"] = per_image
    result["passed"] = not result["failures"]
    return result


def shift_min_evidence(min_evidence: int) -> int:
    """The reference faces behind a strong shift verdict: SHIFT_EVIDENCE_SHARE of --min-evidence."""
    return max(1, math.ceil(int(min_evidence) * SHIFT_EVIDENCE_SHARE))


def shift_applies(precision: str, head: str = "raw") -> bool:
    """Whether an artifact of ``precision`` and ``head`` is proven on the shift gate too (fp16, int8; not
    the end-to-end NMS graph, fp32 only anyway)."""
    return base_precision(precision) in SHIFT_PRECISIONS and head != "nms"


def shift(ref: dict, got: dict, data: ParityInput, mosaics: list, photos: list[str], labels, prior_count: int,
          precision: str, min_evidence: int = MIN_EVIDENCE) -> dict:
    """The shift gate's result of one artifact: its outputs on the mosaics of the parity photos
    (zoo.core.shift: ``data`` the preprocessed mosaics, ``mosaics`` their plan, in the same order;
    ``photos`` the parity photos' sha256, which the evidence records tile by tile) against PyTorch's on
    the same mosaics.

    Tensors and invariants are gated on every mosaic as on the photos; detections are gated on the
    counts pooled over the layouts (as the photos' verdict pools its images), under the precision's
    tier: the margin rule and the strict rule. Returns ``{"layouts", "mosaics", "by_layout": {layout:
    counts}, "pooled": counts with "strict", "evidence", "passed", "failures"}``; every failure starts
    with ``shift:``."""
    tier = TIERS[base_precision(precision)]
    r = compare(ref, got, data, labels, prior_count, precision)
    keys = ("reference", "matched", "missed", "extra", "borderline_missed", "borderline_extra")
    layouts = list(dict.fromkeys(m.layout for m in mosaics))
    by_layout = {lay: {k: 0 for k in keys} | {"mosaics": 0} for lay in layouts}
    for m, c in zip(mosaics, r["per_image"]):
        b = by_layout[m.layout]
        b["mosaics"] += 1
        for k in keys:
            b[k] += c[k]
    for b in by_layout.values():
        b["passed"] = detection_verdict(b, tier)  # recorded per layout; the gate is the pooled verdict
    pooled = {k: r["detections"][k] for k in keys}
    passed = detection_verdict(pooled, tier)
    pooled["passed"] = passed
    failures = [f"shift: {f}" for f in r["failures"] if not f.startswith(DETECTION_FAILURE)]
    if not passed:
        worst = min(layouts, key=lambda lay: (by_layout[lay]["strict"]["recall"], lay))
        failures.append("shift: " + detection_failure(pooled, tier, f"on the {'+'.join(layouts)} mosaics of the parity "
                                                                     "photos, ") + f" (worst layout {worst})")
    gate = [{"name": m.name, "photos": [photos[i] if i < len(photos) else None for i in m.photos]} for m in mosaics]
    ev = evidence(r["detections"]["by_size"], len(mosaics), gate, shift_min_evidence(min_evidence))
    return {"layouts": layouts, "mosaics": [m.name for m in mosaics], "by_layout": by_layout, "pooled": pooled,
            "evidence": ev, "passed": not failures, "failures": failures}


# --------------------------------------------------------------------------- the docs' table of the tiers

#: docs/parity.md's tolerance table sits between these lines; it is generated from RULES (``tiers_markdown``),
#: written by ``scripts/docs_tiers.py --write`` and checked against RULES by tests/unit/test_tiers.py
README_BEGIN = "<!-- tiers: generated from RULES in validation/parity.py by scripts/docs_tiers.py; tests/unit/test_tiers.py checks it -->"
README_END = "<!-- /tiers -->"
#: how an output is called in the table (raw heads' ``locations`` are the raw box offsets)
_OUTPUT_NAMES = {"scores": "scores", "boxes": "boxes", "locations": "raw offsets"}
#: the tier keys the table's columns show; any other key of a tier is listed in an extra column
_SHOWN = ("atol", "rtol", "sum_tol", "min_recall", "min_iou", "max_extra", "score_margin", "strict_min_recall",
          "strict_max_extra")


def _g(v: float) -> str:
    """1e-4, 5e-4, 0.02, 0.25: small numbers as powers of ten, as the docs write them."""
    if 0 < abs(v) < 1e-3:
        mantissa, exp = f"{v:e}".split("e")
        return f"{float(mantissa):g}e{int(exp)}"
    return f"{v:g}"


def _pct(v: float) -> str:
    return f"{round(v * 100, 6):g}%"


def tiers_markdown(rules: dict = RULES) -> str:
    """The README's tolerance table and its detection line, from ``rules`` (RULES): every number of every
    tier appears, so the README cannot say one tolerance while the code applies another."""
    tiers, detect = rules["tiers"], rules["detect"]
    others = sorted({k for t in tiers.values() for k in t} - set(_SHOWN))
    head = ["precision", "output tensors: \\|got - ref\\| <= atol + rtol x \\|ref\\|", "score rows sum to 1 within",
            "detections matched (recall)", "at IoU", "extra detections", "score margin", "strict kept", "strict extra"
            ] + (["other rules"] if others else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, t in tiers.items():
        label = "int8 (every flavour)" if name == "int8" else name
        if t["atol"] is None:
            tensors = "reported, not gated"
        else:
            tensors = ", ".join(f"{_OUTPUT_NAMES.get(k, k)} {_g(v)}" for k, v in t["atol"].items()) + f"; rtol {_g(t['rtol'])}"
        recall = "100%" if t["min_recall"] >= 1 else f">= {_pct(t['min_recall'])}"
        extra = "none" if t["max_extra"] <= 0 else f"<= {_pct(t['max_extra'])}"
        # the strict rule (no score margin on either side: issue 29); fp32 gates every tensor instead
        skept = "not gated" if t.get("strict_min_recall") is None else f">= {_pct(t['strict_min_recall'])}"
        sextra = "not gated" if t.get("strict_max_extra") is None else f"<= {_pct(t['strict_max_extra'])}"
        row = [label, tensors, _g(t["sum_tol"]), recall, f">= {_g(t['min_iou'])}", extra, _g(t["score_margin"]), skept, sextra]
        if others:
            row.append(", ".join(f"{k} {t[k]}" for k in others if k in t) or "-")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Both sides' detections: score threshold {_g(detect['score_threshold'])}, NMS at IoU "
                  f"{_g(detect['iou_threshold'])}, {'every candidate' if detect['candidate_size'] >= 100_000 else _g(detect['candidate_size'])}"
                  f" kept before NMS; size buckets {', '.join(rules['size_buckets'])} pixels high; strong evidence from "
                  f"{MIN_EVIDENCE} reference faces (`--min-evidence`)."]
    return "\n".join(lines)


def readme_tiers_block(readme: str) -> str | None:
    """The generated block of ``readme`` (between README_BEGIN and README_END, without them), or None."""
    if README_BEGIN not in readme or README_END not in readme:
        return None
    return readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip("\n")
