"""Hostile images (issue 16): `read_bgr` returns an 8-bit BGR image or None, or raises ImageTooLarge
(checked from the header, before decoding); `collect` and `load_batch` fail in one ZooError line.
Synthetic files only, written under tmp_path.

Budget: deterministic by default (CI); ZOO_FUZZ_EXAMPLES=K multiplies every example count,
ZOO_FUZZ_SEED=random changes the examples: tests/fuzzing.py, scripts/fuzz.sh.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz
from zoo.core.errors import ZooError
from zoo.core.images import MAX_PIXELS, ImageTooLarge, collect, collect_readable, header_size, load_batch, read_bgr

ROOT = Path(__file__).resolve().parents[2]
#: the bound on one read, however hostile the file: this many times the CPU time of decoding an intact
#: 1024x768 JPEG, measured in the same run (a ratio, so neither the machine's speed nor its load matters;
#: CPU time, so a busy machine does not inflate it, while a decoding bomb burns it). Measured: the costliest
#: case 0.15x (the cases are small images and cut or flipped files)
CASE_RATIO = 20.0
#: an image refused from its header costs less than this share of that decoding: nothing was decoded
REFUSAL_RATIO = 0.5
_UNIT: list[float] = []  # that CPU time, set by ``cpu_unit``
_RATIOS: list[float] = []


def encode(img: np.ndarray, ext: str, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def photo(h: int = 48, w: int = 64, channels: int = 3, dtype=np.uint8, seed_: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed_)
    top = np.iinfo(dtype).max
    shape = (h, w) if channels == 1 else (h, w, channels)
    return (rng.random(shape) * top).astype(dtype)


@pytest.fixture(scope="module", autouse=True)
def cpu_unit(tmp_path_factory) -> float:
    """The CPU seconds of reading an intact 1024x768 JPEG of noise (the median of five reads)."""
    path = tmp_path_factory.mktemp("unit") / "unit.jpg"
    path.write_bytes(encode(photo(768, 1024), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]))
    times = []
    for _ in range(5):
        t0 = time.process_time()
        assert read_bgr(path) is not None
        times.append(time.process_time() - t0)
    _UNIT[:] = [sorted(times)[2]]
    return _UNIT[0]


@pytest.fixture
def put(tmp_path):
    def write(data: bytes, name: str = "x.jpg") -> Path:
        p = tmp_path / name
        p.write_bytes(data)
        return p
    return write


def outcome(path: Path):
    """An image (checked: BGR uint8, 3 channels), None, or the ImageTooLarge message; nothing else."""
    t0 = time.process_time()  # CPU time: a decoding bomb burns it; a busy machine does not inflate it
    try:
        img = read_bgr(path)
    except ImageTooLarge as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)
        return str(e)
    finally:
        took = time.process_time() - t0
        _RATIOS.append(took / _UNIT[0])
        assert took < CASE_RATIO * _UNIT[0], f"{took:.3f} s of CPU for one read, {took / _UNIT[0]:.1f}x an intact 1024x768 JPEG"
    if img is not None:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.size
    return img


# ---------------------------------------------------------------- the odd but valid


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_odd_but_valid_images_decode_to_8bit_bgr(put, ext):
    cases = {"1x1": photo(1, 1), "gray": photo(channels=1)}
    if ext in (".png", ".tif"):
        cases["16-bit"] = photo(dtype=np.uint16)
    if ext in (".png", ".webp", ".tif"):
        cases["rgba"] = photo(channels=4)
    for name, img in cases.items():
        got = outcome(put(encode(img, ext), f"{name}{ext}"))
        assert got is not None, name
        assert got.shape == (img.shape[0], img.shape[1], 3), name
    sixteen = cases.get("16-bit")
    if sixteen is not None:  # scaled to 8 bits, not clipped
        got = outcome(put(encode(sixteen, ext), f"s{ext}"))
        assert abs(int(got.max()) - int(sixteen.max()) // 257) <= 1


def test_a_1x1_image_runs_through_the_batch(put):
    x, _, sizes = load_batch([put(encode(photo(1, 1), ".png"), "one.png")], 320, 240)
    assert x.shape == (1, 3, 240, 320) and sizes == [(1, 1)] and np.isfinite(x).all()


# ---------------------------------------------------------------- unreadable


def test_empty_truncated_and_fake_images_are_unreadable(put, tmp_path):
    jpg, png = encode(photo(), ".jpg"), encode(photo(), ".png")
    for data, name in ((b"", "empty.jpg"), (jpg[: len(jpg) // 2], "half.jpg"), (jpg[:2], "soi.jpg"),
                       (png[: len(png) // 2], "half.png"), (png[:33], "ihdr.png"), (b"hello\n", "text.jpg"),
                       (png, "png-named.bmp")):
        got = outcome(put(data, name))
        assert (got is not None) == (name == "png-named.bmp"), name  # the suffix does not matter, the bytes do
    assert read_bgr(tmp_path) is None and read_bgr(tmp_path / "missing.jpg") is None


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_every_truncation_of_a_small_image_is_none_or_an_image(put, ext):
    data = encode(photo(12, 16), ext)
    for n in range(len(data)):
        outcome(put(data[:n], f"cut{ext}"))


@fuzz(150)
@given(ext=st.sampled_from([".jpg", ".png", ".bmp", ".webp", ".tif"]), data=st.data())
def test_byte_flips_and_cuts_never_raise(put, ext, data):
    blob = bytearray(encode(photo(16, 20, seed_=3), ext))
    for _ in range(data.draw(st.integers(0, 4), label="flips")):
        where = data.draw(st.one_of(st.integers(0, min(64, len(blob)) - 1), st.integers(0, len(blob) - 1)), label="at")
        blob[where] ^= data.draw(st.integers(1, 255), label="xor")
    n = data.draw(st.integers(0, len(blob)), label="length")
    outcome(put(bytes(blob[:n]), f"f{ext}"))


@fuzz(150)
@given(prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xd8\xff", b"BM", b"RIFF\0\0\0\0WEBPVP8X",
                               b"II*\x00", b"MM\x00*"]),
       body=st.binary(max_size=512))
def test_garbage_behind_an_image_signature_never_raises(put, prefix, body):
    outcome(put(prefix + body))


def test_an_unreadable_file_is_none(put):
    p = put(encode(photo(), ".jpg"))
    p.chmod(0)
    if os.geteuid() != 0:
        assert read_bgr(p) is None
        return
    # root reads any file: ask as an unprivileged user, in a child process, in a folder it may enter;
    # a readable copy beside it is the control (the same child reads it as an image)
    d = Path(tempfile.mkdtemp(prefix="zoo-unreadable-"))
    d.chmod(0o711)
    locked, control = d / "locked.jpg", d / "control.jpg"
    locked.write_bytes(p.read_bytes())
    control.write_bytes(p.read_bytes())
    locked.chmod(0)
    control.chmod(0o644)
    code = ("import os, sys; from zoo.core.images import read_bgr; os.setgid(65534); os.setuid(65534); "
            "print(read_bgr(sys.argv[1]) is None, read_bgr(sys.argv[2]) is None)")  # imports first: the interpreter may live under /root
    root = Path(__file__).resolve().parents[2]
    try:
        cp = subprocess.run([sys.executable, "-c", code, str(locked), str(control)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(root)}, cwd="/")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert cp.returncode == 0 and cp.stdout.split() == ["True", "False"], cp.stdout + cp.stderr[-2000:]


# ---------------------------------------------------------------- too large, from the header


def _png_with_size(w: int, h: int) -> bytes:
    data = bytearray(encode(photo(8, 8), ".png"))
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # a well-formed IHDR
    return bytes(data)


def _jpeg_with_size(w: int, h: int) -> bytes:
    data = bytearray(encode(photo(8, 8), ".jpg"))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def _bmp_with_size(w: int, h: int) -> bytes:
    data = bytearray(encode(photo(8, 8), ".bmp"))
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def _webp_with_size(w: int, h: int) -> bytes:  # the extended (VP8X) header: 24-bit sizes
    return b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\0" * 4 \
        + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")


MAKERS = {"png": _png_with_size, "jpeg": _jpeg_with_size, "bmp": _bmp_with_size, "webp": _webp_with_size}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_a_header_declaring_30000x30000_is_refused_before_decoding(put, kind):
    data = MAKERS[kind](30000, 30000)
    assert header_size(data[:64], data) == (30000, 30000)
    t0 = time.process_time()
    msg = outcome(put(data, f"big.{kind}"))
    assert time.process_time() - t0 < REFUSAL_RATIO * _UNIT[0]  # nothing was decoded
    assert isinstance(msg, str) and "30000x30000" in msg and "100 megapixels" in msg, msg
    with pytest.raises(ImageTooLarge, match="100 megapixels"):
        load_batch([put(data, f"big.{kind}")], 320, 240)


def test_a_top_down_bmp_counts_its_height():
    assert header_size(_bmp_with_size(20000, -20000)[:64]) == (20000, 20000)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp"])
def test_the_limit_is_max_pixels_inclusive(put, monkeypatch, ext):
    """The rule, on real images under a lowered limit: width x height <= MAX_PIXELS decodes, one more
    column is refused (at 100 megapixels the same comparison; see the 10001x10000 header below)."""
    from zoo.core import images

    assert MAX_PIXELS == 100_000_000
    monkeypatch.setattr(images, "MAX_PIXELS", 8 * 8)
    assert isinstance(outcome(put(encode(photo(8, 8), ext), f"at{ext}")), np.ndarray)  # decoded, not refused
    assert "9x8" in outcome(put(encode(photo(8, 9), ext), f"over{ext}"))


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_one_column_over_100_megapixels_is_refused(put, kind):
    assert "10001x10000" in outcome(put(MAKERS[kind](10_001, 10_000), f"over.{kind}"))


@fuzz(60)
@given(w=st.integers(1, 300), h=st.integers(1, 300), ext=st.sampled_from([".jpg", ".png", ".bmp", ".webp"]),
       channels=st.sampled_from([1, 3, 4]), data=st.data())
def test_the_header_reader_agrees_with_the_encoder(w, h, ext, channels, data):
    if ext in (".jpg", ".bmp") and channels == 4:
        channels = 3
    params = data.draw(st.sampled_from([(), (cv2.IMWRITE_WEBP_QUALITY, 101), (cv2.IMWRITE_WEBP_QUALITY, 80)]),
                       label="params") if ext == ".webp" else ()  # lossless (VP8L), lossy (VP8; VP8X with alpha)
    blob = encode(photo(h, w, channels), ext, params)
    assert header_size(blob[:64], blob) == (w, h)


def test_a_jpeg_frame_header_after_large_metadata_is_found(put):
    jpg = encode(photo(8, 8), ".jpg")
    app = b"\xff\xe1" + struct.pack(">H", 65535) + b"\0" * 65533  # an EXIF-sized segment, twice
    data = _jpeg_with_size(30000, 30000)
    data = data[:2] + app + app + data[2:]
    assert "30000x30000" in outcome(put(data, "meta.jpg"))
    assert header_size(jpg[:64], jpg) == (8, 8)


def _tiff_with_size(w: int, h: int) -> bytes:
    data = bytearray(encode(photo(8, 8, channels=1), ".tif"))
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd:ifd + 2])
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[at:at + 4])
        if tag in (256, 257):
            value = w if tag == 256 else h
            data[at + 8:at + 12] = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    return bytes(data)


def test_opencv_backstop_refuses_what_the_header_reader_does_not_read(tmp_path):
    """A 400-megapixel TIFF (under OpenCV's default of 1,073 megapixels): refused by the limit
    zoo.core sets for OpenCV, in the import order of the real CLI."""
    p = tmp_path / "big.tif"
    p.write_bytes(_tiff_with_size(20000, 20000))
    code = ("import zoo.cli.main, os, sys\n"
            "from zoo.core import images\n"
            "assert os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'] == str(images.MAX_PIXELS)\n"
            "try:\n    images.read_bgr(sys.argv[1])\nexcept images.ImageTooLarge as e:\n    print('REFUSED', e)\n")
    for setting in (None, "", "lots"):  # unset, or a value on which OpenCV would abort at import: ours
        env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
        if setting is not None:
            env["OPENCV_IO_MAX_IMAGE_PIXELS"] = setting
        env["PYTHONPATH"] = str(ROOT)
        cp = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, env=env, timeout=120)
        assert cp.returncode == 0, cp.stderr[-2000:]
        assert "REFUSED" in cp.stdout and "100 megapixels" in cp.stdout, cp.stdout + cp.stderr[-2000:]


def test_a_file_over_the_byte_limit_is_refused_unread(put, monkeypatch):
    from zoo.core import images

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    msg = outcome(put(encode(photo(), ".bmp"), "big.bmp"))
    assert isinstance(msg, str) and "MiB" in msg, msg


# ---------------------------------------------------------------- folders: collect and load_batch


def _zoo_error(fn) -> str:
    with pytest.raises(ZooError) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_folder_named_like_an_image_is_skipped_in_a_folder_and_expanded_when_named(tmp_path):
    d = tmp_path / "imgs"
    (d / "x.jpg").mkdir(parents=True)
    (d / "x.jpg" / "inner.png").write_bytes(encode(photo(), ".png"))
    (d / "a.png").write_bytes(encode(photo(), ".png"))
    assert collect([d]) == [d / "a.png"]
    assert collect([d / "x.jpg"]) == [d / "x.jpg" / "inner.png"]
    (d / "x.jpg" / "inner.png").unlink()
    assert "holds no images" in _zoo_error(lambda: collect([d / "x.jpg"], "--images"))
    assert "is a folder" in _zoo_error(lambda: load_batch([d / "x.jpg"], 320, 240))


def test_collect_skips_what_is_not_a_regular_image_file(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "notes.txt").write_text("not an image")
    (d / ".DS_Store").write_bytes(b"\0")
    (d / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (d / "ok.JPG").write_bytes(encode(photo(), ".jpg"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(d / "pipe.jpg")  # reading it would block forever
        assert "not a regular file" in _zoo_error(lambda: collect([d / "pipe.jpg"], "--calib"))
    assert collect([d]) == [d / "ok.JPG"]
    assert "not found" in _zoo_error(lambda: collect([d / "gone.jpg"]))


def test_an_empty_folder_or_one_of_non_images_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _zoo_error(lambda: collect([empty], "--calib"))
    assert "--calib folder" in msg and "holds no images" in msg
    (empty / "readme.md").write_text("#")
    assert "holds no images" in _zoo_error(lambda: collect([empty], "--images"))


def test_load_batch_names_the_unreadable_file_among_good_ones(tmp_path):
    good = tmp_path / "a.jpg"
    good.write_bytes(encode(photo(), ".jpg"))
    bad = tmp_path / "b.jpg"
    bad.write_bytes(encode(photo(), ".jpg")[:100])
    msg = _zoo_error(lambda: load_batch(collect([tmp_path]), 320, 240))
    assert "cannot read image" in msg and str(bad) in msg
    assert "no images" in _zoo_error(lambda: load_batch([], 320, 240))


def test_a_parity_or_calibration_folder_is_proven_readable_up_front(tmp_path):
    d = tmp_path / "calib"
    d.mkdir()
    (d / "a.jpg").write_bytes(encode(photo(), ".jpg"))
    (d / "notes.txt").write_text("skipped: not an image suffix")
    assert collect_readable(d, "--calib") == [d / "a.jpg"]
    (d / "b.png").write_bytes(b"")
    msg = _zoo_error(lambda: collect_readable(d, "--calib"))
    assert msg.startswith("--calib: cannot read 1 of 2") and str(d / "b.png") in msg, msg
    (d / "b.png").write_bytes(_png_with_size(30000, 30000))
    msg = _zoo_error(lambda: collect_readable(d, "--images"))
    assert msg.startswith("--images: image") and "100 megapixels" in msg, msg
