"""Finding and reading images, hostile ones included.

What each kind of file does (docs/security.md, "Hostile inputs"):

* A folder is never an image: found inside a folder it is skipped, like any non-image file (wrong
  suffix, a FIFO, a broken link); named directly it is expanded as a folder. A folder that yields
  no image is an error naming it.
* Unreadable (0 bytes, truncated, not an image behind an image suffix, unreadable by permission):
  `read_bgr` returns None; `zoo detect` warns, skips it and exits 1; --images and --calib folders
  are checked up front (`collect_readable`), so one bad file is one line naming it, before any work;
  `load_batch` refuses naming the file too.
* Too large: an image whose header declares more than MAX_PIXELS pixels (PNG IHDR, JPEG SOFn, BMP,
  WebP, read before anything is decoded), or a file over MAX_FILE_BYTES, raises `ImageTooLarge`
  (a ZooError naming the file and the limit: `zoo detect` stops on it) instead of being decoded. OpenCV's own limit
  (OPENCV_IO_MAX_IMAGE_PIXELS, set to the same value in zoo/core/__init__.py before OpenCV loads)
  is the backstop for the other formats (TIFF).
* Anything OpenCV decodes is used as 8-bit BGR: grayscale is expanded to three channels, 16-bit
  is scaled to 8 bits, alpha is dropped, a 1x1 image is resized like any other.
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from zoo.core.errors import ZooError
from zoo.core.fsutil import sha256_file
from zoo.core.model.processing import preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BUILTIN_DIR = Path(__file__).with_name("data") / "images"
CALIBRATION_DIR = Path(__file__).with_name("data") / "calibration"

MAX_PIXELS = 100_000_000  # 100 megapixels: refused from the header, before decoding (~300 MB as BGR)
MAX_FILE_BYTES = 1 << 30  # 1 GiB: refused before reading (a 100-MP image needs far less, even uncompressed)
JPEG_SCAN_BYTES = 4 << 20  # a JPEG's frame header is looked for in its first 4 MiB (metadata segments come first)


class ImageTooLarge(ZooError):
    """An image over MAX_PIXELS (or a file over MAX_FILE_BYTES): refused, never decoded."""


def builtin_images() -> list[Path]:
    return sorted(p for p in BUILTIN_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def default_calibration() -> list[Path]:
    """The built-in photos plus mosaics of them (many small faces, like real group photos);
    see scripts/make_calibration.py."""
    return sorted(builtin_images() + [p for p in CALIBRATION_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES])


def image_records(paths) -> list[dict]:
    """``[{"name", "sha256"}]`` of image files: how a parity result records its gate and calibration sets."""
    return [{"name": Path(p).name, "sha256": sha256_file(Path(p))} for p in paths]


def collect(paths, what: str = "image") -> list[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths.

    In a folder, only regular files with an image suffix count (sub-folders, even one named
    ``x.jpg``, are skipped); a named folder that yields none is an error.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            try:
                found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            except OSError as e:
                raise ZooError(f"cannot list {what} folder {p}: {e.strerror or e}") from None
            if not found:
                raise ZooError(f"{what} folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif p.exists():
            raise ZooError(f"{what} {p} is not a regular file or a folder")
        else:
            raise ZooError(f"{what} not found: {p}")
    return out


def collect_readable(path, what: str) -> list[Path]:
    """``collect([path], what)`` for a folder of parity or calibration images (--images, --calib), every
    one decoded once up front: an unreadable or oversize image is one line naming the option and the file."""
    paths = collect([path], what)
    bad = []
    for p in paths:
        try:
            if read_bgr(p) is None:
                bad.append(p)
        except ImageTooLarge as e:
            raise ImageTooLarge(f"{what}: {e}") from None
    if bad:
        raise ZooError(f"{what}: cannot read {len(bad)} of {len(paths)} image(s), e.g. {bad[0]} "
                       "(empty, truncated or not an image)")
    return paths


def read_bgr(path: Path) -> np.ndarray | None:
    """The image as BGR uint8 (H, W, 3), or None if it cannot be read or decoded.

    Raises ImageTooLarge for a file over MAX_FILE_BYTES or an image over MAX_PIXELS.
    """
    path = Path(path)
    try:
        if not path.is_file():
            return None
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageTooLarge(f"image {path} is {size / 2**20:.0f} MiB, over the limit of "
                                f"{MAX_FILE_BYTES >> 20} MiB per image file")
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    dims = header_size(data[:64].tobytes(), data[:JPEG_SCAN_BYTES])
    if dims is not None and dims[0] * dims[1] > MAX_PIXELS:
        raise _too_large(path, dims)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV's own pixel limit (the backstop) raises; anything else: unreadable
        if "CV_IO_MAX_IMAGE_PIXELS" in str(e) or "validateInputImageSize" in str(e):
            raise _too_large(path, None) from None
        return None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.size == 0:
        return None
    return img


def _too_large(path: Path, dims) -> ImageTooLarge:
    limit = f"the limit of {MAX_PIXELS // 1_000_000} megapixels (MAX_PIXELS); downscale it"
    if dims is None:  # refused by OpenCV's own check (the backstop): the size is not known here
        return ImageTooLarge(f"image {path} has more pixels than {limit}")
    return ImageTooLarge(f"image {path} is {dims[0]}x{dims[1]} ({dims[0] * dims[1] / 1e6:.0f} megapixels), over {limit}")


def header_size(head: bytes, whole=None) -> tuple[int, int] | None:
    """(width, height) declared by a PNG, JPEG, BMP or WebP header, without decoding; None when the
    format is another one or the header is malformed (then the decoder decides). ``head`` is the
    start of the file (64 bytes are enough but for JPEG, whose SOF can lie further: ``whole``, a
    bytes-like prefix of the file, is scanned for it when given)."""
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            if head[12:16] != b"IHDR":
                return None
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"BM":
            (dib,) = struct.unpack("<I", head[14:18])
            if dib == 12:  # BITMAPCOREHEADER: 16-bit unsigned sizes
                return struct.unpack("<HH", head[18:22])
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)  # negative height: a top-down bitmap
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp_size(head)
        if head[:2] == b"\xff\xd8":
            return _jpeg_size(memoryview(whole if whole is not None else head).cast("B"))
    except struct.error:  # shorter than its own header: malformed
        return None
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(b) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the first SOFn (frame header: precision, height, width)."""
    i, n = 2, len(b)
    while i < n:
        if b[i] != 0xFF:
            return None
        while i < n and b[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        m = b[i]
        i += 1
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # markers without a length
            continue
        if m in (0xD9, 0xDA) or i + 2 > n:  # end of image / start of scan before any frame header
            return None
        length = (b[i] << 8) | b[i + 1]
        if length < 2:
            return None
        if m in _SOF:
            if i + 7 > n:
                return None
            h = (b[i + 3] << 8) | b[i + 4]
            w = (b[i + 5] << 8) | b[i + 6]
            return w, h
        i += length
    return None


def _webp_size(b: bytes) -> tuple[int, int] | None:
    chunk = b[12:16]
    if chunk == b"VP8X":  # 24-bit canvas width-1 and height-1
        return int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1
    if chunk == b"VP8L" and b[20:21] == b"\x2f":  # 14-bit width-1 and height-1
        (bits,) = struct.unpack("<I", b[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and b[23:26] == b"\x9d\x01\x2a":  # key frame: 14-bit width and height
        w, h = struct.unpack("<HH", b[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def load_batch(paths: list[Path], width: int, height: int) -> tuple[np.ndarray, list[Path], list[tuple[int, int]]]:
    """Preprocess readable images into one (N, 3, H, W) batch; an unreadable or oversize one raises."""
    xs, sizes = [], []
    for p in paths:
        if Path(p).is_dir():
            raise ZooError(f"{p} is a folder, not an image")
        img = read_bgr(p)
        if img is None:
            raise ZooError(f"cannot read image {p} (missing, empty, truncated or not an image)")
        xs.append(preprocess(img, width, height))
        sizes.append((img.shape[1], img.shape[0]))
    if not xs:
        raise ZooError("no images to process")
    return np.concatenate(xs, 0), list(paths), sizes
