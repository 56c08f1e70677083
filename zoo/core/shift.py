"""The shift gate's material: mosaics of the parity photos themselves, made at the network's input size.

A verdict on the parity photos says little about crowds: after the resize to 320x240 the pinned photos'
faces are mostly 16-64 px high, a user's crowd photo puts them at 5-20 px, where an int8 file's
clipped activation ranges lose them first. The shift gate proves every fp16 and int8 artifact again on
g x g mosaics of the same photos (LAYOUTS: 2x2 and 3x3, the faces at a half and a third of their size),
against what PyTorch finds on each mosaic (zoo.validation.parity's ``shift``).

A mosaic is made directly at the network's input size W x H: the canvas is cut into g x g tiles (tile
edges at round(i * W / g)), each tile one photo resized to it as the preprocessing resizes a whole photo
(cv2.resize, its default interpolation, aspect ratio not kept). The photos, ordered by file name (so
the same photos make the same mosaics whichever folder or list they come from), fill the tiles row by
row: ceil(N / g^2) mosaics per layout, every photo exactly once per layout, the tiles left over black
(16 photos: four 2x2 and two 3x3 mosaics, the last with two black tiles; six inferences more per
artifact). The mosaic is then preprocessed like any image (its resize to W x H is the identity).
Deterministic: the same photos give the same arrays, so the PyTorch reference on them is computed once
and cached with the parity one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.core.errors import ZooError

#: the tested layouts: g x g tiles per mosaic
LAYOUTS = (2, 3)
#: how the mosaics are made (this module's rules): part of the cached PyTorch reference's key and of the
#: parity RULES, so a change here recomputes the reference and re-proves the artifacts
VERSION = 1


@dataclass(frozen=True)
class Mosaic:
    layout: str  # "2x2"
    index: int  # 1-based, within its layout
    photos: tuple[int, ...]  # indexes into the photos in `order`, tile by tile (row-major); fewer than g*g: black tiles

    @property
    def name(self) -> str:
        return f"mosaic{self.layout}-{self.index}"


def plan(n_photos: int, layouts=LAYOUTS) -> list[Mosaic]:
    """The mosaics of ``n_photos`` photos: per layout g, ceil(n / g^2) mosaics whose tiles take the photos
    in order (every photo in exactly one mosaic of every layout; the last mosaic's spare tiles black)."""
    if n_photos < 1:
        return []
    out = []
    for g in layouts:
        tiles = g * g
        count = -(-n_photos // tiles)
        for m in range(count):
            out.append(Mosaic(f"{g}x{g}", m + 1, tuple(range(m * tiles, min((m + 1) * tiles, n_photos)))))
    return out


def _edges(n: int, g: int) -> list[int]:
    return [round(i * n / g) for i in range(g + 1)]


def compose(photos: list[np.ndarray], mosaic: Mosaic, width: int, height: int) -> np.ndarray:
    """One mosaic as a BGR uint8 (height, width, 3) image, from the decoded photos (BGR)."""
    import cv2  # heavy: only parity and calibration material need it

    g = int(mosaic.layout.split("x")[0])
    xs, ys = _edges(width, g), _edges(height, g)
    canvas = np.zeros((height, width, 3), np.uint8)
    for t, i in enumerate(mosaic.photos):
        r, c = divmod(t, g)
        tw, th = xs[c + 1] - xs[c], ys[r + 1] - ys[r]
        canvas[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = cv2.resize(photos[i], (tw, th))
    return canvas


def order(paths) -> list[Path]:
    """The photos in the order their mosaics take them: by file name (then path)."""
    return sorted((Path(p) for p in paths), key=lambda p: (p.name, str(p)))


def batch(paths, width: int, height: int, layouts=LAYOUTS) -> tuple[np.ndarray, list[Mosaic], list[Path]]:
    """The preprocessed (M, 3, H, W) batch of the mosaics of ``paths``, their plan, and the photos in the
    order the plan's indexes refer to (`order`)."""
    from zoo.core.images import read_bgr  # heavy (OpenCV)
    from zoo.core.model.processing import preprocess  # with OpenCV: only parity and calibration need it

    paths = order(paths)
    photos = []
    for p in paths:
        img = read_bgr(Path(p))
        if img is None:
            raise ZooError(f"cannot read image {p} (missing, empty, truncated or not an image)")
        photos.append(img)
    mosaics = plan(len(photos), layouts)
    if not mosaics:
        raise ZooError("no images to make the shift gate's mosaics of")
    x = np.concatenate([preprocess(compose(photos, m, width, height), width, height) for m in mosaics], 0)
    return x, mosaics, paths
