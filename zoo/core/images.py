"""Finding and reading images."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from zoo.core.errors import ZooError
from zoo.core.model.processing import preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BUILTIN_DIR = Path(__file__).with_name("data") / "images"
CALIBRATION_DIR = Path(__file__).with_name("data") / "calibration"


def builtin_images() -> list[Path]:
    return sorted(p for p in BUILTIN_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def default_calibration() -> list[Path]:
    """The built-in photos plus mosaics of them (many small faces, like real group photos);
    see scripts/make_calibration.py."""
    return sorted(builtin_images() + [p for p in CALIBRATION_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES])


def collect(paths, what: str = "image") -> list[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ZooError(f"{what} folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise ZooError(f"{what} not found: {p}")
    return out


def read_bgr(path: Path) -> np.ndarray | None:
    """The image as BGR uint8, or None if it cannot be decoded."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None or data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return img


def load_batch(paths: list[Path], width: int, height: int) -> tuple[np.ndarray, list[Path], list[tuple[int, int]]]:
    """Preprocess readable images into one (N, 3, H, W) batch; unreadable ones raise."""
    xs, sizes = [], []
    for p in paths:
        img = read_bgr(p)
        if img is None:
            raise ZooError(f"cannot read image {p}")
        xs.append(preprocess(img, width, height))
        sizes.append((img.shape[1], img.shape[0]))
    if not xs:
        raise ZooError("no images to process")
    return np.concatenate(xs, 0), list(paths), sizes
