"""ONNX -> MNN conversion (fp32 / fp16 / weight-only int8) with MNN's native converter,
bizCode metadata, and byte-reproducible files.

Facts about MNN 3.6.1 this module depends on (measured, not guessed):

* ``_tools.mnnconvert`` always returns True; success is judged from the
  output file.  An unreadable or missing model just leaves no file.
* ``--bizCode`` is stored verbatim as a flatbuffer string; 100 000
  characters (UTF-8, tabs, quotes, newlines, leading '-') round-trip through
  ``MNN.nn.load_module_from_file(...).get_info()["bizCode"]``.  Without the
  flag MNN writes ``"MNNTest"``.  ``--bizCode=`` (empty) swallows the next
  argument, so an empty biz code is never passed.
* ADMM calibration needs an NC4HW4 input (see ``quantize``), so
  ``onnx_to_mnn`` converts with ``--keepInputFormat=false`` (NC4HW4 input,
  like the original project's files).
* MNN writes a random UUID into every model; ``make_reproducible`` replaces it.

The functions are pure (inputs -> files), write their outputs atomically and
can be run in a subprocess.
"""
from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from zoo.exporters.mnn.native import existing_file, import_tools, load_info, model_inputs, native_output, output_file, tail
from zoo.exporters.mnn.runner import MnnNet
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_path, atomic_write_bytes

#: Our own cap on the bizCode length (MNN itself accepted 100 000 chars).
MAX_BIZ_CODE_CHARS = 65536

_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def onnx_to_mnn(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    fp16: bool = False,
    weight_int8: bool = False,
    biz_code: str = "",
    target_version: str | None = None,
) -> None:
    """Convert an ONNX file to MNN with the native converter, in-process.

    * ``fp16``: weights stored as float16 (``--fp16``); compute stays fp32 on
      CPUs without fp16 arithmetic.
    * ``weight_int8``: weight-only int8 (``--weightQuantBits 8``, symmetric,
      channel-wise); activations stay float.
    * ``biz_code``: stored verbatim in the model's bizCode field (our JSON
      metadata); at most MAX_BIZ_CODE_CHARS characters, no NUL.  Empty means
      "not set" and MNN then stores "MNNTest".
    * ``target_version``: MNN's ``--targetVersion`` (major.minor such as "3.0",
      "compatibility for old mnn engine"); None: the converter's own release.

    The input keeps its name/shape but uses the NC4HW4 layout
    (``--keepInputFormat=false``, required by ADMM quantization); callers feed
    NCHW data through MNN's host tensor conversion as usual.  The file is
    written atomically: it is loaded back, its bizCode compared and one probe
    inference run before it replaces ``out_path``.  Raises ZooError on any
    failure.
    """
    src = existing_file(onnx_path, "ONNX model")
    out = output_file(out_path)
    if fp16 and weight_int8:
        raise ZooError("choose either fp16 or weight_int8, not both")
    if not isinstance(biz_code, str):
        raise ZooError("biz_code must be a string")
    if "\x00" in biz_code:
        raise ZooError("biz_code must not contain NUL characters")
    if len(biz_code) > MAX_BIZ_CODE_CHARS:
        raise ZooError(f"biz_code is {len(biz_code)} characters; the limit is {MAX_BIZ_CODE_CHARS}")

    with atomic_path(out, "mnn") as tmp:
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
        if target_version is not None:
            if not re.fullmatch(r"\d{1,3}\.\d{1,3}", str(target_version)):
                raise ZooError(f"target_version must be major.minor such as 3.0, got {target_version!r}")
            argv += ["--targetVersion", str(target_version)]
        with native_output() as log:
            ok = import_tools().mnnconvert(argv)
        if not ok or not tmp.is_file() or tmp.stat().st_size == 0:
            raise ZooError(f"MNN conversion of {src.name} failed -- MNN: {tail(log[0])}")
        info = load_info(tmp)
        if biz_code and info.get("bizCode") != biz_code:
            raise ZooError("MNN did not store the biz code verbatim")
        with MnnNet(tmp):  # one probe inference: never publish a file MNN cannot run
            pass


def read_biz_code(mnn_path: str | os.PathLike) -> str:
    """The bizCode string stored in an .mnn file ("MNNTest" if none was set)."""
    p = existing_file(mnn_path, "MNN model")
    code = load_info(p).get("bizCode")
    if not isinstance(code, str):
        raise ZooError(f"MNN reported no bizCode for {p}")
    return code


def model_input_format(mnn_path: str | os.PathLike) -> str:
    """Data format of the model's (first) input: "NCHW", "NC4HW4" or "NHWC"."""
    return model_inputs(existing_file(mnn_path, "MNN model"))[0][0]


def make_reproducible(path: Path) -> None:
    """MNN writes a random UUID into every model; replace it by one derived from the content,
    so the same inputs give byte-identical files (same length: the flatbuffer stays valid)."""
    data = Path(path).read_bytes()
    found = _UUID.findall(data[:4096])
    if not found:
        return
    blank = _UUID.sub(b"0" * 8 + b"-0000-0000-0000-" + b"0" * 12, data, count=len(found))
    stable = str(uuid.uuid5(uuid.NAMESPACE_OID, hashlib.sha256(blank).hexdigest())).encode()
    atomic_write_bytes(path, _UUID.sub(stable, data, count=len(found)))
