"""Regenerate zoo/core/data/calibration/ from the built-in photos (deterministic).

int8 calibration needs activations like those of real inputs: group photos with many small
faces, not only single portraits. The built-in set is three portraits, so the default
calibration set adds mosaics of them (2x2, 3x3, 4x4, 6x6 tiles, alternate tiles mirrored).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "zoo" / "core" / "data" / "images"
DST = ROOT / "zoo" / "core" / "data" / "calibration"


def main() -> None:
    imgs = [cv2.imread(str(p)) for p in sorted(SRC.glob("*.jpg"))]
    DST.mkdir(parents=True, exist_ok=True)
    for g in (2, 3, 4, 6):
        h, w = 480, 640
        canvas = np.zeros((h, w, 3), np.uint8)
        th, tw = h // g, w // g
        k = 0
        for r in range(g):
            for c in range(g):
                im = imgs[(k + g) % len(imgs)]
                k += 1
                if (r + c) % 2:
                    im = im[:, ::-1]
                canvas[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = cv2.resize(im, (tw, th), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(DST / f"mosaic{g}x{g}.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])


if __name__ == "__main__":
    main()
