"""Pre- and post-processing in NumPy: the one implementation every runtime shares."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zoo.core.model import priors as P

MEAN = 127.0
STD = 128.0


def preprocess(image_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """BGR uint8 image (H, W, 3) -> network input (1, 3, height, width) float32.

    The whole image is resized to the network size (aspect ratio not kept),
    converted to RGB and normalised as (x - 127) / 128.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {image_bgr.shape}")
    import cv2  # lazy: the runners (and `zoo compat`'s runtime environments) need no OpenCV

    resized = cv2.resize(image_bgr, (width, height))
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32)
    x = (rgb - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


#: how far a score row may sum from 1 and still count as softmaxed, by precision (zoo.core.manifest's
#: base precision): the parity invariants and `zoo detect`'s probe of an artifact share it. int8 allows
#: 0.1: MNN's full int8 quantises the softmax's output on slim-320 (rows off by up to 0.073 on the
#: parity photos, 0.059 on a zero input), and a row that is not softmaxed at all (logits, a raw head read
#: as scores) is off by far more.
SOFTMAX_TOL = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.1}


def softmax_error(scores: np.ndarray) -> float:
    """The largest distance of a score row's sum from 1 (0.0 for no rows)."""
    s = np.asarray(scores, np.float64)
    return float(np.abs(s.sum(-1) - 1.0).max()) if s.size else 0.0


def softmax_problem(scores: np.ndarray, precision: str) -> str | None:
    """None when the rows of ``scores`` (..., K) are softmaxed within SOFTMAX_TOL of ``precision`` (a
    flavour such as "int8-io" has its precision's tolerance), else what is wrong, in words."""
    tol = SOFTMAX_TOL[precision.split("-", 1)[0]]
    err = softmax_error(scores)
    if err <= tol:
        return None
    return f"score rows do not sum to 1 (worst off by {err:.3g}, more than the {tol:g} {precision.split('-', 1)[0]} allows)"


def decode(locations: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Raw offsets (..., P, 4) + priors (P, 4) (cx, cy, w, h) -> corner boxes (..., P, 4)."""
    loc = locations.astype(np.float32)
    centers = loc[..., :2] * P.CENTER_VARIANCE * priors[:, 2:] + priors[:, :2]
    sizes = np.exp(loc[..., 2:] * P.SIZE_VARIANCE) * priors[:, 2:]
    return np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1).astype(np.float32)


def encode(boxes: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Corner boxes (..., P, 4) + priors (P, 4) -> the raw offsets `decode` turns back into them (float32);
    a side of zero or less (what a damaged file can output) is taken as 1e-6 of its prior's."""
    b = boxes.astype(np.float64)
    pr = priors.astype(np.float64)
    centers = (b[..., :2] + b[..., 2:]) / 2
    sizes = np.maximum(b[..., 2:] - b[..., :2], 1e-6 * pr[:, 2:])
    loc_xy = (centers - pr[:, :2]) / (P.CENTER_VARIANCE * pr[:, 2:])
    loc_wh = np.log(sizes / pr[:, 2:]) / P.SIZE_VARIANCE
    return np.concatenate([loc_xy, loc_wh], axis=-1).astype(np.float32)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box (4,) against many (M, 4)."""
    tl = np.maximum(box[:2], boxes[:, :2])
    br = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(br - tl, 0, None).prod(axis=1)
    area_a = np.clip(box[2:] - box[:2], 0, None).prod()
    area_b = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None).prod(axis=1)
    return inter / (area_a + area_b - inter + 1e-5)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of corner boxes (N, 4) x (M, 4) -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-12)


def hard_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, candidate_size: int, top_k: int = -1) -> np.ndarray:
    """Indices kept by greedy hard NMS over the ``candidate_size`` best-scoring boxes."""
    order = np.argsort(-scores, kind="stable")[:candidate_size]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if 0 < top_k == len(keep):
            break
        rest = order[1:]
        if not rest.size:
            break
        order = rest[iou(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in original-image pixels
    score: float
    label: str
    class_id: int

    def to_json(self) -> dict:
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 5), "label": self.label}


def postprocess(
    scores: np.ndarray,
    boxes: np.ndarray,
    image_width: int,
    image_height: int,
    labels: list[str] | tuple[str, ...],
    score_threshold: float = 0.7,
    iou_threshold: float = 0.3,
    candidate_size: int = 200,
    top_k: int = -1,
) -> list[Detection]:
    """One image's (P, K) scores and (P, 4) normalised corner boxes -> detections.

    Per non-background class: keep scores > threshold, the ``candidate_size``
    best, hard NMS; boxes are scaled to the original image. Sorted by score.
    """
    if scores.ndim == 3:
        scores, boxes = scores[0], boxes[0]
    out: list[Detection] = []
    for cls in range(1, scores.shape[1]):
        s = scores[:, cls]
        mask = s > score_threshold
        if not mask.any():
            continue
        b, s = boxes[mask], s[mask]
        kept = hard_nms(b, s, iou_threshold, candidate_size, top_k)
        label = labels[cls] if cls < len(labels) else str(cls)
        for i in kept:
            x1, y1, x2, y2 = (b[i] * np.array([image_width, image_height, image_width, image_height])).tolist()
            out.append(Detection((x1, y1, x2, y2), float(s[i]), label, cls))
    out.sort(key=lambda d: -d.score)
    if top_k > 0:
        out = out[:top_k]
    return out
