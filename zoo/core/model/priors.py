"""Prior (anchor) boxes of the UltraFace family, for any input size."""
from __future__ import annotations

import math

import numpy as np

#: Minimum box sizes in pixels, one list per detection level.
MIN_BOXES: tuple[tuple[int, ...], ...] = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
#: Stride of each detection level.
STRIDES: tuple[int, ...] = (8, 16, 32, 64)
#: Box-coding variances (centre, size).
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2


def feature_map_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """(fm_w, fm_h) of every detection level."""
    return [(math.ceil(width / s), math.ceil(height / s)) for s in STRIDES]


def anchors_per_level() -> list[int]:
    return [len(m) for m in MIN_BOXES]


def prior_count(width: int, height: int) -> int:
    return sum(fw * fh * len(m) for (fw, fh), m in zip(feature_map_sizes(width, height), MIN_BOXES))


def generate_priors(width: int, height: int) -> np.ndarray:
    """Priors as (P, 4) float32 rows (cx, cy, w, h), normalised to [0, 1].

    Order: level, then row (y), then column (x), then min box size.
    """
    rows: list[np.ndarray] = []
    for (fw, fh), sizes in zip(feature_map_sizes(width, height), MIN_BOXES):
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = (xs.reshape(-1) + 0.5) / fw
        cy = (ys.reshape(-1) + 0.5) / fh
        n = cx.shape[0]
        for_level = np.empty((n, len(sizes), 4), dtype=np.float64)
        for a, m in enumerate(sizes):
            for_level[:, a, 0] = cx
            for_level[:, a, 1] = cy
            for_level[:, a, 2] = m / width
            for_level[:, a, 3] = m / height
        rows.append(for_level.reshape(-1, 4))
    priors = np.concatenate(rows, axis=0)
    return np.clip(priors, 0.0, 1.0).astype(np.float32)
