"""Issue 40: the image header reader and the folder collector, case by case (what the mutation run of
zoo/core/images.py found unchecked): every WebP flavour OpenCV writes (lossy VP8, lossless VP8L, lossy with
alpha VP8X) at sizes that use both bytes of each field, the JPEG markers that carry no length, the exact
figures of the too-large message, and the collector's messages and records."""
from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from zoo.core import images
from zoo.core.errors import ZooError
from zoo.core.images import (CALIBRATION_DIR, IMAGE_SUFFIXES, ImageTooLarge, builtin_images, collect,
                             collect_readable, default_calibration, header_size, image_records, read_bgr)

SIZES = [(1, 1), (257, 3), (300, 517), (1029, 70)]  # widths/heights over 255: both bytes of each field


def _img(w: int, h: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(w * 7919 + h)
    return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)


def _webp(w: int, h: int, channels: int = 3, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".webp", _img(w, h, channels), (cv2.IMWRITE_WEBP_QUALITY, quality))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("w,h", SIZES)
@pytest.mark.parametrize("flavour,channels,quality", [("VP8 ", 3, 80), ("VP8L", 3, 101), ("VP8X", 4, 80)])
def test_every_webp_flavour_declares_its_size(w, h, flavour, channels, quality):
    blob = _webp(w, h, channels, quality)
    assert blob[12:16] == flavour.encode()  # the flavour this case is about (lossy, lossless, lossy with alpha)
    assert header_size(blob[:64], blob) == (w, h)


def test_a_lossy_webp_ignores_its_scale_bits():
    """A VP8 key frame's 16-bit size fields carry a 2-bit upscale hint above the 14-bit size."""
    blob = bytearray(_webp(300, 517))
    blob[27] |= 0xC0
    blob[29] |= 0xC0
    assert header_size(bytes(blob[:64])) == (300, 517)


def test_a_lossy_webp_is_read_as_lossy_whatever_its_frame_tag():
    """Byte 20 is the VP8 frame tag; 0x2f there is the VP8L signature only inside a VP8L chunk."""
    blob = bytearray(_webp(300, 517))
    blob[20] = 0x2F
    assert header_size(bytes(blob[:64])) == (300, 517)


@pytest.mark.parametrize("at", [23, 24, 25])
def test_a_lossy_webp_without_its_key_frame_start_code_is_not_read(at):
    blob = bytearray(_webp(300, 517))
    blob[at] ^= 0xFF
    assert header_size(bytes(blob[:64])) is None


def test_a_lossless_webp_without_its_signature_is_not_read():
    blob = bytearray(_webp(300, 517, quality=101))
    blob[20] = 0x2E
    assert header_size(bytes(blob[:64])) is None


def _jpeg(w: int = 300, h: int = 517) -> bytes:
    ok, buf = cv2.imencode(".jpg", _img(w, h))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("marker", [0x01, 0xD0, 0xD3, 0xD7, 0xD8])
def test_jpeg_markers_without_a_length_are_stepped_over(marker):
    """TEM, RST0-7 and SOI carry no length: a frame header after them is still found."""
    jpg = _jpeg()
    data = jpg[:2] + bytes([0xFF, marker]) + jpg[2:]
    assert header_size(data[:64], data) == (300, 517)


@pytest.mark.parametrize("marker", [0xD9, 0xDA])
def test_end_of_image_or_a_scan_before_the_frame_header_ends_the_walk(marker):
    jpg = _jpeg()
    data = jpg[:2] + bytes([0xFF, marker]) + jpg[2:]
    assert header_size(data[:64], data) is None


def _png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + b"\0" * 32)


def test_the_too_large_message_gives_the_size_and_the_megapixels(tmp_path):
    p = tmp_path / "big.png"
    p.write_bytes(_png_header(10002, 15047))  # 150,500,094 pixels: 151 megapixels to the nearest one
    with pytest.raises(ImageTooLarge) as e:
        read_bgr(p)
    assert str(e.value) == (f"image {p} is 10002x15047 (151 megapixels), over the limit of 100 megapixels "
                            "(MAX_PIXELS); downscale it")


def test_the_backstop_message_names_the_file_and_the_limit(tmp_path):
    """OpenCV's own pixel check (a format whose header zoo does not read): the size is not known."""
    msg = str(images._too_large(tmp_path / "x.tif", None))
    assert msg == f"image {tmp_path / 'x.tif'} has more pixels than the limit of 100 megapixels (MAX_PIXELS); downscale it"


def test_collect_keeps_files_and_names_what_is_missing(tmp_path):
    f = tmp_path / "a.jpg"
    f.write_bytes(_jpeg(8, 8))
    assert collect([f]) == [f]
    with pytest.raises(ZooError) as e:
        collect([tmp_path / "nope.jpg"])
    assert str(e.value) == f"image not found: {tmp_path / 'nope.jpg'}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZooError) as e:
        collect([empty], "--calib")
    assert str(e.value) == f"--calib folder {empty} holds no images ({', '.join(IMAGE_SUFFIXES)})"


def test_a_folder_that_cannot_be_listed_is_one_line(tmp_path, monkeypatch):
    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(ZooError) as e:
        collect([tmp_path], "--images")
    assert str(e.value) == f"cannot list --images folder {tmp_path}: Permission denied"


def test_collect_readable_names_the_option(tmp_path):
    with pytest.raises(ZooError) as e:
        collect_readable(tmp_path / "nope", "--images")
    assert str(e.value) == f"--images not found: {tmp_path / 'nope'}"
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "good.jpg").write_bytes(_jpeg(8, 8))
    with pytest.raises(ZooError) as e:
        collect_readable(tmp_path, "--calib")
    assert str(e.value) == (f"--calib: cannot read 1 of 2 image(s), e.g. {tmp_path / 'bad.jpg'} "
                            "(empty, truncated or not an image)")


def test_default_calibration_is_the_builtin_photos_and_their_mosaics():
    got = default_calibration()
    mosaics = sorted(p for p in CALIBRATION_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    assert mosaics and got == sorted(builtin_images() + mosaics)
    assert all(read_bgr(p) is not None for p in got)


def test_image_records_name_and_hash_each_file(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.png"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    assert image_records([a, str(b)]) == [{"name": "a.jpg", "sha256": hashlib.sha256(b"first").hexdigest()},
                                          {"name": "b.png", "sha256": hashlib.sha256(b"second").hexdigest()}]


def test_jpeg_segment_edges():
    jpg = _jpeg()
    assert header_size(jpg[:64]) is None  # the frame header lies past the 64 bytes and no more was given
    assert header_size(jpg[:2] + b"\xff\xd9\x00\x02" + jpg[2:]) is None  # end of image: the walk stops there
    data = jpg[:2] + b"\xff\xe0\x00\x02" + jpg[2:]  # an empty segment (length 2: just its length) is stepped over
    assert header_size(data[:64], data) == (300, 517)
    frame = b"\xff\xd8\xff\xc0\x00\x11\x08" + (517).to_bytes(2, "big") + (300).to_bytes(2, "big")
    assert header_size(frame, frame) == (300, 517)  # a frame header ending with the data is complete
    assert header_size(frame[:-1], frame[:-1]) is None


def test_png_bmp_and_webp_header_fields():
    assert header_size(_png_header(3_000_000_000, 1)) == (3_000_000_000, 1)  # unsigned: never negative
    core = b"BM" + b"\0" * 12 + (12).to_bytes(4, "little") + (40000).to_bytes(2, "little") + (3).to_bytes(2, "little")
    assert header_size(core + b"\0" * 40) == (40000, 3)  # BITMAPCOREHEADER: 16-bit unsigned sizes
    vp8x = _webp(300, 517, channels=4)
    assert header_size(b"RIFX" + vp8x[4:64]) is None  # WEBP behind another container is not read as WebP
    assert header_size(vp8x[:8] + b"WAVE" + vp8x[12:64]) is None


def test_the_file_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 3 << 20)
    jpg = _jpeg(8, 8)
    at, over = tmp_path / "at.jpg", tmp_path / "over.jpg"
    at.write_bytes(jpg + b"\0" * ((3 << 20) - len(jpg)))  # trailing bytes after the image: still decodes
    over.write_bytes(jpg + b"\0" * ((3 << 20) - len(jpg) + 1))
    assert read_bgr(at).shape == (8, 8, 3)
    with pytest.raises(ImageTooLarge) as e:
        read_bgr(over)
    assert str(e.value) == f"image {over} is 3 MiB, over the limit of 3 MiB per image file"


def test_an_empty_batch_is_refused():
    with pytest.raises(ZooError) as e:
        images.load_batch([], 320, 240)
    assert str(e.value) == "no images to process"


def test_opencv_backstop_in_process_names_the_file(tmp_path):
    """A format whose header zoo does not read (PPM) declaring 40000x40000: OpenCV's own pixel check refuses it."""
    p = tmp_path / "huge.ppm"
    p.write_bytes(b"P6\n40000 40000\n255\n" + bytes(30))
    assert header_size(p.read_bytes()[:64]) is None
    with pytest.raises(ImageTooLarge) as e:
        read_bgr(p)
    assert str(e.value) == f"image {p} has more pixels than the limit of 100 megapixels (MAX_PIXELS); downscale it"
