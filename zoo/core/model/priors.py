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


# --------------------------------------------------------------------------- dynamic input sizes
#
# The arithmetic: every stride-2 convolution of the network is 3x3 with padding 1, which maps n pixels
# to floor((n - 1) / 2) + 1 = ceil(n / 2); so a level of stride s has exactly ceil(W / s) x ceil(H / s)
# cells for EVERY W, H >= 1 (checked for both architectures at every size 1..69 and around each
# multiple of 64), which is the count `prior_count` gives: the network never disagrees with the priors.
#
# The prior formula puts the centre of cell i at (i + 0.5) / ceil(W / s) of the width, while the cell
# really sits at (i + 0.5) * s pixels; the two agree only when s divides W. We therefore require W and
# H to be multiples of the finest stride (8): the level that finds the small faces is then exactly
# aligned at every size; the coarser levels are off by less than one cell, as they already are at the
# trained 320x240 (240 is not a multiple of 32 or 64). Below 64 pixels a side the stride-64 level is a
# single cell and the model sees nothing a face detector could use, so sizes start there.
DYNAMIC_MULTIPLE = 8
DYNAMIC_MIN_SIDE = 64
DYNAMIC_MAX_SIDE = 4096


def size_problem(width: int, height: int) -> str | None:
    """Why a dynamic artifact cannot run at ``width`` x ``height`` (None: it can)."""
    for name, v in (("width", width), ("height", height)):
        if not (DYNAMIC_MIN_SIDE <= v <= DYNAMIC_MAX_SIDE) or v % DYNAMIC_MULTIPLE:
            return (f"input size {width}x{height}: the {name} {v} is outside the network's constraint "
                    f"(each side a multiple of {DYNAMIC_MULTIPLE} between {DYNAMIC_MIN_SIDE} and {DYNAMIC_MAX_SIDE})")
    return None


def round_side(v: float) -> int:
    """The allowed side nearest to ``v``."""
    r = int(round(v / DYNAMIC_MULTIPLE)) * DYNAMIC_MULTIPLE
    return min(DYNAMIC_MAX_SIDE, max(DYNAMIC_MIN_SIDE, r))


def auto_size(image_w: int, image_h: int, trained: tuple[int, int]) -> tuple[int, int]:
    """The input size for a photo: its aspect ratio, its long side at the trained long side, each
    side rounded to what the network allows."""
    long_side = max(trained)
    scale = long_side / max(image_w, image_h)
    return round_side(image_w * scale), round_side(image_h * scale)


def dynamic_info() -> dict:
    """What a runtime needs to make the priors of any size, recorded in a dynamic artifact's metadata."""
    return {"free_axes": ["N", "H", "W"], "strides": list(STRIDES), "min_boxes": [list(m) for m in MIN_BOXES],
            "prior_center": "(i + 0.5) / ceil(side / stride)", "size_multiple": DYNAMIC_MULTIPLE,
            "min_side": DYNAMIC_MIN_SIDE, "max_side": DYNAMIC_MAX_SIDE}


def parity_sizes(trained: tuple[int, int]) -> list[tuple[str, tuple[int, int]]]:
    """The sizes a dynamic artifact's parity proves beside its trained size: twice it, portrait, 16:9
    (long side twice the trained long side) and an odd size inside the constraint (multiples of 8
    but not of 16: every level's prior grid then differs from the trained one)."""
    w, h = trained
    long2 = 2 * max(w, h)
    odd_w = round_side(w * 1.15) + (DYNAMIC_MULTIPLE if (round_side(w * 1.15) // DYNAMIC_MULTIPLE) % 2 == 0 else 0)
    odd_h = round_side(h * 1.15) + (DYNAMIC_MULTIPLE if (round_side(h * 1.15) // DYNAMIC_MULTIPLE) % 2 == 0 else 0)
    return [("twice", (2 * w, 2 * h)), ("portrait", (h, w)), ("16:9", (long2, round_side(long2 * 9 / 16))),
            ("odd", (odd_w, odd_h))]

