"""Regenerate zoo/core/data/calibration/ from the built-in photos (deterministic).

int8 calibration needs activations like those of real inputs: group photos with many faces
of every size, on busy backgrounds, in bright and dim light -- not only three portraits. The
built-in set is three portraits (zoo/core/data/images), so the default calibration set adds
material made from them alone (never from the parity photos):

* mosaics: 2x2 to 8x8 tiles (faces from a third of the frame down to ~10 px at 320x240),
  alternate tiles mirrored;
* collages: tiles of mixed sizes scattered over a textured background (noise, gradients),
  each tile with its own brightness and contrast;
* close-ups: crops of each photo zoomed to the frame (faces larger than in any portrait);
* light: dim, bright and low-contrast versions of the mosaics.

Run: python scripts/make_calibration.py  (writes JPEGs at quality 92; the output is byte-stable
for a given OpenCV build, and the files are committed).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "zoo" / "core" / "data" / "images"
DST = ROOT / "zoo" / "core" / "data" / "calibration"
H, W = 480, 640


def mosaic(imgs, g: int) -> np.ndarray:
    canvas = np.zeros((H, W, 3), np.uint8)
    th, tw = H // g, W // g
    k = 0
    for r in range(g):
        for c in range(g):
            im = imgs[(k + g) % len(imgs)]
            k += 1
            if (r + c) % 2:
                im = im[:, ::-1]
            canvas[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = cv2.resize(im, (tw, th), interpolation=cv2.INTER_AREA)
    return canvas


def background(rng) -> np.ndarray:
    """Busy clutter: coloured noise at several scales over a gradient."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = np.stack([x / W * 255, y / H * 255, (x + y) / (W + H) * 255], -1) * rng.uniform(0.3, 1.0, 3)
    for s in (4, 16, 64):
        n = rng.uniform(0, 255, (H // s + 1, W // s + 1, 3)).astype(np.float32)
        base = 0.6 * base + 0.4 * cv2.resize(n, (W, H), interpolation=cv2.INTER_LINEAR)
    return np.clip(base, 0, 255).astype(np.uint8)


def collage(imgs, rng, n_tiles: int) -> np.ndarray:
    canvas = background(rng)
    for _ in range(n_tiles):
        im = imgs[int(rng.integers(len(imgs)))]
        if rng.random() < 0.5:
            im = im[:, ::-1]
        th = int(rng.integers(24, 200))
        tw = max(8, int(th * im.shape[1] / im.shape[0]))
        tile = cv2.resize(im, (tw, th), interpolation=cv2.INTER_AREA).astype(np.float32)
        tile = np.clip((tile - 128) * rng.uniform(0.6, 1.4) + 128 + rng.uniform(-50, 50), 0, 255).astype(np.uint8)
        y0, x0 = int(rng.integers(0, max(1, H - th))), int(rng.integers(0, max(1, W - tw)))
        canvas[y0:y0 + th, x0:x0 + tw] = tile[:H - y0, :W - x0]
    return canvas


def closeup(im, frac: float, cx: float, cy: float) -> np.ndarray:
    h, w = im.shape[:2]
    ch, cw = int(h * frac), int(h * frac * W / H)
    cw = min(cw, w)
    x0 = int(np.clip(cx * w - cw / 2, 0, w - cw))
    y0 = int(np.clip(cy * h - ch / 2, 0, h - ch))
    return cv2.resize(im[y0:y0 + ch, x0:x0 + cw], (W, H), interpolation=cv2.INTER_LINEAR)


def light(im, gain: float, gamma: float, contrast: float) -> np.ndarray:
    f = (im.astype(np.float32) / 255.0) ** gamma * gain
    f = (f - 0.5) * contrast + 0.5
    return np.clip(f * 255, 0, 255).astype(np.uint8)


def main() -> None:
    imgs = [cv2.imread(str(p)) for p in sorted(SRC.glob("*.jpg"))]
    DST.mkdir(parents=True, exist_ok=True)
    for old in DST.glob("*.jpg"):
        old.unlink()
    rng = np.random.default_rng(2026)
    out: dict[str, np.ndarray] = {}
    for g in (2, 3, 4, 6, 8):
        out[f"mosaic{g}x{g}"] = mosaic(imgs, g)
    for i, n in enumerate((6, 12, 24, 40)):
        out[f"collage{i}"] = collage(imgs, rng, n)
    # the faces of the portraits sit in their upper middle
    for i, (frac, cx, cy) in enumerate(((0.5, 0.5, 0.3), (0.35, 0.5, 0.3))):
        for j, im in enumerate(imgs):
            out[f"closeup{i}{j}"] = closeup(im, frac, cx, cy)
    out["dim"] = light(out["mosaic4x4"], 0.45, 1.2, 1.0)
    out["bright"] = light(out["mosaic3x3"], 1.3, 0.7, 1.0)
    out["flat"] = light(out["mosaic6x6"], 1.0, 1.0, 0.5)
    for name, im in out.items():
        cv2.imwrite(str(DST / f"{name}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 92])


if __name__ == "__main__":
    main()
