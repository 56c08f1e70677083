"""MNN toolkit: ONNX -> MNN conversion (fp32 / fp16 / weight-only int8),
full int8 quantization, bizCode metadata and a small runner.

Only the compiled extensions of the ``MNN`` wheel are used:

* ``_tools`` (``_tools.mnnconvert(argv)``, ``_tools.mnnquant(argv)``) for
  conversion and quantization;
* ``MNN`` (``_mnncengine``) for loading and running models.

Never import ``MNN.tools`` (or anything under it): importing
``MNN.tools.mnnconvert`` / ``MNN.tools.mnnquant`` pulls in
``MNN.tools.utils.log``, which shells out to ``pip install -U
aliyun-log-python-sdk`` and posts usage logs (machine id, model hash) to a
remote server.  The native functions do neither (see
tests/test_mnn_tools.py, which proves it with audit hooks and strace).

Facts about MNN 3.6.1 this module depends on (measured, not guessed):

* ``_tools.mnnconvert`` always returns True; success is judged from the
  output file.  An unreadable or missing model just leaves no file.
* ``--bizCode`` is stored verbatim as a flatbuffer string; 100 000
  characters (UTF-8, tabs, quotes, newlines, leading '-') round-trip through
  ``MNN.nn.load_module_from_file(...).get_info()["bizCode"]``.  Without the
  flag MNN writes ``"MNNTest"``.  ``--bizCode=`` (empty) swallows the next
  argument, so an empty biz code is never passed.
* ADMM calibration writes every image as NC4HW4 into a buffer sized for the
  model's input layout: with an NCHW input (the MNN 3.x default,
  ``--keepInputFormat`` true) the last image overflows the heap and the
  process aborts/segfaults.  ``onnx_to_mnn`` therefore converts with
  ``--keepInputFormat=false`` (NC4HW4 input, like the original project's
  files), and ``quantize_mnn`` refuses ADMM on an NCHW-input model.
* The quantizer also writes ``<dst>.json`` (tensor scales); it is dropped.
* Sessions on unsupported models (e.g. the original project's int8 files:
  "Don't support type [EltwiseInt8]") are created anyway; the failure only
  shows as copy/run errors.  ``MnnNet`` runs a probe inference at load time
  and raises ZooError with MNN's own message.

All functions are pure (inputs -> files), write their outputs atomically and
can be run in a subprocess.  Native log output (stdout/stderr of the C++
code) is captured and only shown in error messages.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from zoo.errors import ZooError

__all__ = [
    "MAX_BIZ_CODE_CHARS",
    "FEATURE_METHODS",
    "WEIGHT_METHODS",
    "MnnNet",
    "onnx_to_mnn",
    "quantize_mnn",
    "read_biz_code",
    "model_input_format",
]

#: Our own cap on the bizCode length (MNN itself accepted 100 000 chars).
MAX_BIZ_CODE_CHARS = 65536
#: feature_quantize_method values accepted by MNN's calibration.
FEATURE_METHODS = ("ADMM", "KL", "EMA")
#: weight_quantize_method values accepted by MNN's calibration.
WEIGHT_METHODS = ("MAX_ABS", "ADMM")

# Preprocessing of the UltraFace family: RGB, (pixel - 127) / 128.
_MEAN = 127.0
_NORM = 1.0 / 128.0
_TAIL_CHARS = 400
# MNN::Interpreter::HintMode::WINOGRAD_MEMORY_LEVEL
_HINT_WINOGRAD_MEMORY_LEVEL = 3


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
@contextlib.contextmanager
def _native_output() -> Iterator[list[str]]:
    """Redirect fds 1 and 2 (C/C++ printf/cout of MNN) to a temp file.

    Yields a list that receives the captured text once the block ends (also
    on exceptions).  Not thread-safe: other threads' output in this window is
    captured too.
    """
    sink: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    libc = None
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None)
    saved: list[int] = []
    with tempfile.TemporaryFile(mode="w+b") as buf:
        try:
            for fd in (1, 2):
                saved.append(os.dup(fd))
                os.dup2(buf.fileno(), fd)
        except OSError:
            # No usable fds (e.g. closed stdout): run without capturing.
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            saved = []
        try:
            yield sink
        finally:
            if libc is not None:
                with contextlib.suppress(Exception):
                    libc.fflush(None)
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            buf.seek(0)
            sink.append(buf.read().decode("utf-8", "replace"))


_ERROR_WORDS = ("error", "fail", "support", "invalid", "can't", "cannot", "not ", "check")


def _tail(text: str) -> str:
    """MNN's native log condensed to one line: its error-looking lines (else
    its last lines), so a ZooError stays a single readable line."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines()
             if ln.strip() and not ln.startswith("The device supports")]  # CPU banner printed on import
    picked = [ln for ln in lines if any(w in ln.lower() for w in _ERROR_WORDS)] or lines[-3:]
    seen: list[str] = []
    for ln in picked:
        if ln not in seen:
            seen.append(ln)
    out = " | ".join(seen)
    return out if len(out) <= _TAIL_CHARS else out[: _TAIL_CHARS - 3] + "..."


def _import_tools():
    """The compiled converter/quantizer (never the MNN.tools Python package)."""
    try:
        import _tools  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the env
        raise ZooError(f"MNN is not installed (no _tools extension): {exc}") from exc
    return _tools


def _import_mnn():
    try:
        import MNN  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the env
        raise ZooError(f"MNN is not installed: {exc}") from exc
    return MNN


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ZooError(f"{what} not found: {p}")
    if not os.access(p, os.R_OK):
        raise ZooError(f"{what} is not readable: {p}")
    return p


def _out_dir(out_path: str | os.PathLike) -> Path:
    out = Path(out_path)
    if out.is_dir():
        raise ZooError(f"output path is a directory: {out}")
    if not out.parent.is_dir():
        raise ZooError(f"output folder does not exist: {out.parent}")
    return out


def _temp_name(out: Path, tag: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".{tag}.tmp", dir=out.parent)
    os.close(fd)
    os.unlink(name)  # the native tool creates it; we only want a unique name
    return Path(name)


def _check_mnn_loads(path: Path) -> dict:
    """Open a freshly written .mnn the way MNN's runtime does; return its info."""
    with _native_output() as log:
        MNN = _import_mnn()
        try:
            module = MNN.nn.load_module_from_file(str(path), [], [])
            info = dict(module.get_info())
        except Exception as exc:  # MNN raises bare Exception / SystemError
            info = {"error": str(exc)}
    if "error" in info:
        raise ZooError(f"MNN cannot load {path.name}: {info['error']} -- MNN: {_tail(log[0])}")
    return info


def _model_inputs(mnn_path: Path) -> list[tuple[str, list[int]]]:
    """(data format, shape) of every Input of an .mnn graph."""
    err = ""
    with _native_output() as log:
        MNN = _import_mnn()
        try:
            variables = MNN.expr.load_as_dict(str(mnn_path))
        except Exception as exc:
            variables, err = {}, str(exc)
    inputs = [v for v in variables.values() if getattr(v, "op_type", "") == "Input"]
    if not inputs:
        raise ZooError(f"not a readable MNN model (no input found): {mnn_path} {err} -- MNN: {_tail(log[0])}".rstrip())
    # data_format prints as e.g. "data_format.NC4HW4"
    return [(str(v.data_format).rsplit(".", 1)[-1], [int(d) for d in v.shape]) for v in inputs]


def model_input_format(mnn_path: str | os.PathLike) -> str:
    """Data format of the model's (first) input: "NCHW", "NC4HW4" or "NHWC"."""
    return _model_inputs(_existing_file(mnn_path, "MNN model"))[0][0]


# --------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------
def onnx_to_mnn(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    fp16: bool = False,
    weight_int8: bool = False,
    biz_code: str = "",
) -> None:
    """Convert an ONNX file to MNN with the native converter, in-process.

    * ``fp16``: weights stored as float16 (``--fp16``); compute stays fp32 on
      CPUs without fp16 arithmetic.
    * ``weight_int8``: weight-only int8 (``--weightQuantBits 8``, symmetric,
      channel-wise); activations stay float.
    * ``biz_code``: stored verbatim in the model's bizCode field (our JSON
      metadata); at most MAX_BIZ_CODE_CHARS characters, no NUL.  Empty means
      "not set" and MNN then stores "MNNTest".

    The input keeps its name/shape but uses the NC4HW4 layout
    (``--keepInputFormat=false``, required by ADMM quantization); callers feed
    NCHW data through MNN's host tensor conversion as usual.  The file is
    written atomically: it is loaded back, its bizCode compared and one probe
    inference run before it replaces ``out_path``.  Raises ZooError on any
    failure.
    """
    src = _existing_file(onnx_path, "ONNX model")
    out = _out_dir(out_path)
    if fp16 and weight_int8:
        raise ZooError("choose either fp16 or weight_int8, not both")
    if not isinstance(biz_code, str):
        raise ZooError("biz_code must be a string")
    if "\x00" in biz_code:
        raise ZooError("biz_code must not contain NUL characters")
    if len(biz_code) > MAX_BIZ_CODE_CHARS:
        raise ZooError(f"biz_code is {len(biz_code)} characters; the limit is {MAX_BIZ_CODE_CHARS}")

    tmp = _temp_name(out, "mnn")
    argv = [
        "MNNConvert",
        "-f", "ONNX",
        "--modelFile", str(src),
        "--MNNModel", str(tmp),
        "--keepInputFormat=false",
    ]
    if biz_code:
        argv.append("--bizCode=" + biz_code)  # '=' form: values may start with '-'
    if fp16:
        argv.append("--fp16")
    if weight_int8:
        argv += ["--weightQuantBits", "8"]
    try:
        with _native_output() as log:
            tools = _import_tools()
            ok = tools.mnnconvert(argv)
        if not ok or not tmp.is_file() or tmp.stat().st_size == 0:
            raise ZooError(f"MNN conversion of {src.name} failed -- MNN: {_tail(log[0])}")
        info = _check_mnn_loads(tmp)
        if biz_code and info.get("bizCode") != biz_code:
            raise ZooError("MNN did not store the biz code verbatim")
        MnnNet(tmp).close()  # one probe inference: never publish a file MNN cannot run
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_biz_code(mnn_path: str | os.PathLike) -> str:
    """The bizCode string stored in an .mnn file ("MNNTest" if none was set)."""
    p = _existing_file(mnn_path, "MNN model")
    info = _check_mnn_loads(p)
    code = info.get("bizCode")
    if not isinstance(code, str):
        raise ZooError(f"MNN reported no bizCode for {p}")
    return code


# --------------------------------------------------------------------------
# quantization
# --------------------------------------------------------------------------
def _write_calibration_images(images: Sequence[str | os.PathLike], width: int, height: int, folder: Path) -> int:
    """Decode with OpenCV, resize the whole image to W x H (as the host does)
    and store lossless PNGs, so MNN's own loader/resizer sees exactly the
    pixels our preprocessing produces (its resize becomes an identity)."""
    import cv2

    bad: list[str] = []
    for i, img_path in enumerate(images):
        p = Path(img_path)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR) if p.is_file() else None
        if img is None or img.size == 0:
            bad.append(str(p))
            continue
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
        if not cv2.imwrite(str(folder / f"calib_{i:05d}.png"), img):
            raise ZooError(f"cannot write calibration image into {folder}")
    if bad:
        shown = ", ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        raise ZooError(f"{len(bad)} calibration image(s) missing or unreadable: {shown}")
    return len(images)


def quantize_mnn(
    fp32_mnn_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    calib_images: list[str],
    width: int,
    height: int,
    method: str = "ADMM",
    weight_method: str = "MAX_ABS",
) -> None:
    """Full int8 quantization (weights and activations) with MNN's native
    calibration.

    Calibration images are decoded on the host (OpenCV), resized to
    ``width`` x ``height`` and fed as RGB with mean 127 and scale 1/128 -- the
    UltraFace preprocessing.  ``method`` is the feature (activation) method
    (ADMM, KL or EMA), ``weight_method`` MAX_ABS or ADMM.  ADMM needs the
    fp32 model's input in NC4HW4 layout (what ``onnx_to_mnn`` writes) and
    keeps all calibration images in memory as one batch; its run time grows
    about linearly with the number of images (~10 s per 320x240 image, ~45 s
    per 640x480 image on one core here).  KL is fast but wrecked slim-320
    (see the report); ADMM on 2-4 images is the measured choice.  The bizCode
    of the fp32 model is kept.  Written atomically after a probe inference.
    Raises ZooError on bad input or failure.
    """
    src = _existing_file(fp32_mnn_path, "fp32 MNN model")
    out = _out_dir(out_path)
    if method not in FEATURE_METHODS:
        raise ZooError(f"unknown feature quantization method {method!r}; choose one of {FEATURE_METHODS}")
    if weight_method not in WEIGHT_METHODS:
        raise ZooError(f"unknown weight quantization method {weight_method!r}; choose one of {WEIGHT_METHODS}")
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ZooError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(calib_images, (str, bytes, os.PathLike)):
        raise ZooError("calib_images must be a list of image paths, not a single path")
    images = list(calib_images or [])
    if not images:
        raise ZooError("no calibration images given")

    (fmt, dims), *_ = _model_inputs(src)
    if method == "ADMM" and fmt != "NC4HW4":
        raise ZooError(
            f"ADMM calibration needs an NC4HW4-input model (MNN 3.6.1 corrupts memory otherwise); "
            f"{src.name} has a {fmt} input. Convert it with onnx_to_mnn, or use method='KL'."
        )
    if len(dims) == 4 and all(d > 0 for d in dims[2:]) and dims[2:] != [height, width]:
        raise ZooError(f"{src.name} expects {dims[3]}x{dims[2]} input but calibration asked for {width}x{height}")

    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".quant", dir=out.parent))
    try:
        img_dir = work / "images"
        img_dir.mkdir()
        n = _write_calibration_images(images, int(width), int(height), img_dir)
        config = {
            "format": "RGB",
            "mean": [_MEAN, _MEAN, _MEAN],
            "normal": [_NORM, _NORM, _NORM],
            "width": int(width),
            "height": int(height),
            "path": str(img_dir) + os.sep,
            "used_image_num": n,
            "feature_quantize_method": method,
            "weight_quantize_method": weight_method,
        }
        cfg_path = work / "quant.json"
        cfg_path.write_text(json.dumps(config), encoding="utf-8")
        tmp = work / "quantized.mnn"
        with _native_output() as log:
            tools = _import_tools()
            ok = tools.mnnquant(["mnnquant", str(src), str(tmp), str(cfg_path)])
        if not ok or not tmp.is_file() or tmp.stat().st_size == 0:
            raise ZooError(f"MNN quantization of {src.name} failed -- MNN: {_tail(log[0])}")
        if tmp.stat().st_size >= 0.75 * src.stat().st_size:
            raise ZooError(
                f"MNN quantization of {src.name} produced no int8 weights "
                f"({tmp.stat().st_size} vs {src.stat().st_size} bytes) -- MNN: {_tail(log[0])}"
            )
        _check_mnn_loads(tmp)
        MnnNet(tmp).close()  # one probe inference: never publish a file MNN cannot run
        os.replace(tmp, out)  # work/ lives in out's folder: same file system, atomic
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------
# runner
# --------------------------------------------------------------------------
class MnnNet:
    """Run an .mnn model on the CPU backend with fp32 ("high") precision.

    ``with MnnNet(path, threads=1) as net: outs = net.infer(x)`` where ``x`` is
    (N, C, H, W) float32 (already preprocessed) and ``outs`` maps every output
    name to an (N, ...) float32 array.  Samples are run one at a time (the
    graphs have batch-1 reshapes).  A different H x W than the model's resizes
    the session.  Every MNN failure (unsupported op, session not ready, run
    error, empty output) raises ZooError.  Not thread-safe; use one instance
    per thread.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 1) -> None:
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ZooError(f"threads must be a positive integer, got {threads!r}")
        self.path = _existing_file(path, "MNN model")
        self.threads = int(threads)
        self._interp = None
        self._session = None
        with _native_output() as log:
            MNN = self._MNN = _import_mnn()
            try:
                interp = MNN.Interpreter(str(self.path))
                # Measured: with MNN's default Winograd setting RFB's boxes are
                # off onnxruntime by up to 1.1e-3; WINOGRAD_MEMORY_LEVEL 0 brings
                # that to 2.7e-5 with no measurable slowdown.
                interp.setSessionHint(_HINT_WINOGRAD_MEMORY_LEVEL, 0)
                session = interp.createSession(
                    {"backend": "CPU", "precision": "high", "numThread": self.threads}
                )
                err = ""
            except Exception as exc:
                interp = session = None
                err = str(exc)
        if interp is None or session is None:
            raise ZooError(f"MNN cannot load {self.path.name}: {err} -- MNN: {_tail(log[0])}".rstrip())
        self._interp, self._session = interp, session
        self._native_log = log[0]
        inp = interp.getSessionInput(session)
        self._input_shape = tuple(int(d) for d in inp.getShape())
        if len(self._input_shape) != 4:
            raise ZooError(f"{self.path.name}: expected a 4-D image input, got shape {self._input_shape}")
        self.output_names = sorted(interp.getSessionOutputAll(session).keys())
        # Probe run: MNN creates sessions on unsupported models and only fails later.
        with _native_output() as log:
            try:
                self._run_one(np.zeros((1,) + self._input_shape[1:], np.float32))
            except ZooError as exc:
                failure = str(exc)
            else:
                failure = ""
        if failure:
            self.close()
            raise ZooError(f"{failure} -- MNN: {_tail(self._native_log + log[0])}")

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "MnnNet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the session and the model (the interpreter owns the session)."""
        self._session = None
        self._interp = None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Current (1, C, H, W) input shape of the session."""
        return self._input_shape  # type: ignore[return-value]

    # -- inference -------------------------------------------------------
    def _fail(self, what: str) -> ZooError:
        return ZooError(f"MNN failed to run {self.path.name}: {what}")

    def _resize(self, shape: tuple[int, ...]) -> None:
        interp, session = self._interp, self._session
        with _native_output() as log:
            inp = interp.getSessionInput(session)
            interp.resizeTensor(inp, shape)
            interp.resizeSession(session)
        got = tuple(int(d) for d in interp.getSessionInput(session).getShape())
        if got != tuple(shape):
            raise ZooError(f"MNN cannot resize {self.path.name} to input {shape} -- MNN: {_tail(log[0])}")
        self._input_shape = got

    def _run_one(self, sample: np.ndarray) -> dict[str, np.ndarray]:
        """One (1, C, H, W) sample through the session (no output capture:
        the hot path stays cheap; the probe run in __init__ captures MNN's log)."""
        MNN = self._MNN
        interp, session = self._interp, self._session
        if interp is None or session is None:
            raise ZooError(f"MnnNet({self.path.name}) is closed")
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        host = MNN.Tensor(sample.shape, MNN.Halide_Type_Float, sample, MNN.Tensor_DimensionType_Caffe)
        if not interp.getSessionInput(session).copyFrom(host):
            raise self._fail("the session did not accept the input (unsupported model or op?)")
        code = interp.runSession(session)
        if code != 0:
            raise self._fail(f"runSession returned error code {code}")
        results: dict[str, np.ndarray] = {}
        for name, t in interp.getSessionOutputAll(session).items():
            shape = tuple(int(d) for d in t.getShape())
            if not shape or min(shape) <= 0:
                raise self._fail(f"output {name!r} has an empty shape {shape}")
            out = MNN.Tensor(shape, MNN.Halide_Type_Float, np.zeros(shape, np.float32), MNN.Tensor_DimensionType_Caffe)
            if not t.copyToHostTensor(out):
                raise self._fail(f"cannot read output {name!r}")
            arr = np.array(out.getNumpyData(), dtype=np.float32, copy=True).reshape(shape)
            if not np.isfinite(arr).all():
                raise self._fail(f"output {name!r} contains NaN/inf")
            results[name] = arr
        if not results:
            raise self._fail("the model produced no outputs")
        return results

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run (N, C, H, W) float32 input; returns {output name: (N, ...) array}."""
        if not isinstance(x, np.ndarray):
            raise ZooError(f"input must be a numpy array, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[0] < 1:
            raise ZooError(f"input must be (N, C, H, W) with N >= 1, got shape {x.shape}")
        if x.shape[1] != self._input_shape[1]:
            raise ZooError(f"{self.path.name} expects {self._input_shape[1]} channels, got {x.shape[1]}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ZooError(f"input must be a float array (preprocessed), got {x.dtype}")
        want = (1,) + tuple(int(d) for d in x.shape[1:])
        if want != self._input_shape:
            self._resize(want)
        per_sample = [self._run_one(x[i : i + 1]) for i in range(x.shape[0])]
        return {name: np.concatenate([r[name] for r in per_sample], axis=0) for name in per_sample[0]}

