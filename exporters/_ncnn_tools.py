"""ncnn toolkit: ONNX -> ncnn conversion (pnnx), our own int8 quantizer, and a runner.

Everything here is a pure function of its inputs (files in, files out) except
:class:`NcnnNet`, which owns one loaded ``ncnn.Net``.  Nothing is cached at
module level.

Why ONNX (and not TorchScript) goes into pnnx: both work on this network -- a traced
``zoo.nets.UltraFace(head="raw")`` and the ONNX file give the same 80-layer ncnn graph
(only pnnx's layer names differ) and the same outputs.  ONNX is what the exporter
pipeline validates elsewhere (fixed shape, BatchNorm folded, onnxsim'd, public names
``input``/``scores``/``boxes``), carries its input shape (no ``inputshape=`` guess), and
needs neither torch nor a re-trace at conversion time; pnnx's ONNX front end maps
every op of the graph (Conv, Relu, Add, Concat, Transpose, Reshape, Softmax, and for
the post-processed graphs Exp/Slice/Mul/constants) to native ncnn layers.  The fp32
result stores the same weights as the original project's ncnn file (same .bin size)
and its raw outputs agree with that file and with onnxruntime within 1e-4.

ncnn int8 file format written by :func:`quantize_int8` (what ncnn's own
``ncnn2int8`` writes and ``Convolution::load_model`` reads):

* ``.param``: the layer line gets ``8=<int8_scale_term>``: 2 for
  ``Convolution`` (per-output-channel weight scales), 1 for
  ``ConvolutionDepthWise`` (per-group weight scales).
* ``.bin``, per quantized layer, in this order: weight as a tagged blob
  (uint32 tag ``0x000D4B38`` + ``weight_data_size`` int8 bytes, zero padded to a
  multiple of 4), bias as raw float32 (``num_output`` values, untagged, only
  if ``5=1``), then ``num_output`` (or ``group``) float32 weight scales, then
  one float32 bottom-blob (input activation) scale.  Scales are
  multiplicative: ``q = clamp(round(x * scale), -127, 127)``.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from zoo.errors import ZooError

__all__ = [
    "onnx_to_ncnn",
    "quantize_int8",
    "NcnnNet",
    "read_param",
    "weight_storage",
    "int8_layers",
    "file_size",
    "SKIP_FIRST",
    "SKIP_HEADS",
    "SKIP_AUTO",
]

TAG_FP32 = 0x00000000
TAG_FP32_ALT = 0x0002C056
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38

#: tokens understood by ``quantize_int8(skip_layers=...)`` besides layer names
SKIP_FIRST = "@first"  # convolutions that read the network input directly
SKIP_HEADS = "@heads"  # convolutions whose output reaches no other convolution
SKIP_AUTO = "@auto"  # measured per-layer sensitivity, fp32 within a size budget

_CONV_TYPES = ("Convolution", "ConvolutionDepthWise")
# ncnn layer types that carry no data in the .bin (the only ones the bin
# walker lets through besides the convolutions).
_WEIGHTLESS = {
    "Input", "ReLU", "Split", "Concat", "Reshape", "Permute", "Softmax", "Sigmoid",
    "BinaryOp", "Eltwise", "Pooling", "Flatten", "Crop", "Slice", "Clip", "Noop",
    "Dropout", "HardSwish", "HardSigmoid", "Swish", "Exp", "UnaryOp", "Interp",
    "ShuffleChannel", "Squeeze", "ExpandDims", "Mish", "TanH", "ELU", "Tile",
    "Reduction", "ArgMax",
}


# --------------------------------------------------------------------------- #
# .param parsing / writing
# --------------------------------------------------------------------------- #
@dataclass
class ParamLayer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: list[tuple[str, str]] = field(default_factory=list)  # (key, raw value) in file order

    def get(self, key: int, default=None):
        for k, v in self.params:
            if k == str(key):
                return v
        return default

    def geti(self, key: int, default: int = 0) -> int:
        v = self.get(key)
        return default if v is None else int(float(v))

    def set(self, key: int, value) -> None:
        for i, (k, _) in enumerate(self.params):
            if k == str(key):
                self.params[i] = (k, str(value))
                return
        self.params.append((str(key), str(value)))

    def line(self) -> str:
        head = f"{self.type:<24} {self.name:<24} {len(self.bottoms)} {len(self.tops)}"
        rest = " ".join(self.bottoms + self.tops + [f"{k}={v}" for k, v in self.params])
        return f"{head} {rest}".rstrip()


def read_param(param_path: str | os.PathLike) -> list[ParamLayer]:
    """Parse an ncnn text .param file into layers (ZooError on a malformed file)."""
    path = Path(param_path)
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read ncnn param {path}: {e}") from e
    lines = [ln for ln in lines if ln]
    if len(lines) < 2 or lines[0] != "7767517":
        raise ZooError(f"{path} is not an ncnn text param file (magic 7767517 missing)")
    try:
        layer_count, _blob_count = (int(t) for t in lines[1].split()[:2])
    except ValueError as e:
        raise ZooError(f"{path}: bad layer/blob count line {lines[1]!r}") from e
    layers: list[ParamLayer] = []
    for ln in lines[2:]:
        tok = ln.split()
        try:
            typ, name, nb, nt = tok[0], tok[1], int(tok[2]), int(tok[3])
        except (IndexError, ValueError) as e:
            raise ZooError(f"{path}: malformed layer line {ln!r}") from e
        bottoms = tok[4:4 + nb]
        tops = tok[4 + nb:4 + nb + nt]
        params = []
        for kv in tok[4 + nb + nt:]:
            if "=" not in kv:
                raise ZooError(f"{path}: malformed parameter {kv!r} in layer {name}")
            k, v = kv.split("=", 1)
            params.append((k, v))
        layers.append(ParamLayer(typ, name, bottoms, tops, params))
    if len(layers) != layer_count:
        raise ZooError(f"{path}: header says {layer_count} layers, file has {len(layers)}")
    return layers


def _param_text(layers: Sequence[ParamLayer]) -> str:
    blobs: set[str] = set()
    for ly in layers:
        blobs.update(ly.bottoms)
        blobs.update(ly.tops)
    return "7767517\n" + f"{len(layers)} {len(blobs)}\n" + "".join(ly.line() + "\n" for ly in layers)


def _input_blobs(layers: Sequence[ParamLayer]) -> list[str]:
    return [t for ly in layers if ly.type == "Input" for t in ly.tops]


def _output_blobs(layers: Sequence[ParamLayer]) -> list[str]:
    consumed = {b for ly in layers for b in ly.bottoms}
    return [t for ly in layers for t in ly.tops if t not in consumed]


# --------------------------------------------------------------------------- #
# .bin walking
# --------------------------------------------------------------------------- #
@dataclass
class _ConvData:
    layer: ParamLayer
    start: int
    end: int
    dtype: str  # fp32 / fp16 / int8
    weight: np.ndarray  # float32 (decoded) or int8 as stored
    bias: np.ndarray | None
    weight_scales: np.ndarray | None
    bottom_scale: float | None


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _walk_bin(layers: Sequence[ParamLayer], blob: bytes, where: str) -> dict[str, _ConvData]:
    """Decode the weights of every (depthwise) convolution; check the file is consumed exactly."""
    pos = 0
    out: dict[str, _ConvData] = {}

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(blob):
            raise ZooError(f"{where}: .bin ends early (needs {pos + n} bytes, has {len(blob)})")
        b = blob[pos:pos + n]
        pos += n
        return b

    def tagged(n: int, ly: ParamLayer) -> tuple[str, np.ndarray]:
        """ModelBin::load(n, type=0): a 4-byte storage tag, then the data."""
        (tag,) = struct.unpack("<I", take(4))
        if tag in (TAG_FP32, TAG_FP32_ALT):
            return "fp32", np.frombuffer(take(4 * n), "<f4").astype(np.float32)
        if tag == TAG_FP16:
            return "fp16", np.frombuffer(take(_align4(2 * n))[:2 * n], "<f2").astype(np.float32)
        if tag == TAG_INT8:
            return "int8", np.frombuffer(take(_align4(n))[:n], np.int8).copy()
        raise ZooError(f"{where}: layer {ly.name}: unsupported weight storage tag 0x{tag:08X}")

    for ly in layers:
        if ly.type == "MemoryData":
            dims = [ly.geti(k) for k in (0, 1, 11, 2)]  # w h d c
            if dims[0]:
                n = int(np.prod([d for d in dims if d]))
                if ly.geti(21, 1) == 0:
                    tagged(n, ly)
                else:
                    take(4 * n)
        elif ly.type in _CONV_TYPES:
            if ly.geti(19, 0):  # dynamic weight: nothing stored
                continue
            start = pos
            n_out = ly.geti(0)
            wsize = ly.geti(6)
            dtype, weight = tagged(wsize, ly)
            bias = np.frombuffer(take(4 * n_out), "<f4").astype(np.float32) if ly.geti(5) else None
            term = ly.geti(8)
            wsc = bsc = None
            if term:
                if ly.type == "Convolution":
                    n_wsc = n_out
                elif term in (1, 101):
                    n_wsc = ly.geti(7, 1)
                else:
                    n_wsc = 1
                wsc = np.frombuffer(take(4 * n_wsc), "<f4").astype(np.float32)
                bsc = float(np.frombuffer(take(4), "<f4")[0])
                if term > 100:
                    take(4)
            out[ly.name] = _ConvData(ly, start, pos, dtype, weight, bias, wsc, bsc)
        elif ly.type not in _WEIGHTLESS:
            raise ZooError(f"{where}: layer {ly.name} of type {ly.type} is not supported by the ncnn tools")
    if pos != len(blob):
        raise ZooError(f"{where}: .bin has {len(blob) - pos} unread trailing bytes (param/bin mismatch)")
    return out


def _load_pair(param_path, bin_path) -> tuple[list[ParamLayer], bytes, dict[str, _ConvData]]:
    layers = read_param(param_path)
    try:
        blob = Path(bin_path).read_bytes()
    except OSError as e:
        raise ZooError(f"cannot read ncnn bin {bin_path}: {e}") from e
    return layers, blob, _walk_bin(layers, blob, str(bin_path))


def weight_storage(param_path, bin_path) -> dict[str, str]:
    """{conv layer name: 'fp32' | 'fp16' | 'int8'} as actually stored in the .bin."""
    _, _, convs = _load_pair(param_path, bin_path)
    return {k: v.dtype for k, v in convs.items()}


def int8_layers(param_path) -> list[str]:
    """Names of the layers whose .param line asks for int8 (``8=`` non-zero)."""
    return [ly.name for ly in read_param(param_path) if ly.type in _CONV_TYPES and ly.geti(8)]


def file_size(*paths) -> int:
    return sum(os.path.getsize(p) for p in paths)


# --------------------------------------------------------------------------- #
# small file helpers
# --------------------------------------------------------------------------- #
def _atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _pnnx_executable() -> str:
    spec = importlib.util.find_spec("pnnx")
    if spec is not None and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            exe = Path(d) / ("pnnx.exe" if os.name == "nt" else "pnnx")
            if exe.is_file():
                return str(exe)
    exe = shutil.which("pnnx")
    if exe:
        return exe
    raise ZooError("pnnx is not installed (pip package 'pnnx'); cannot convert to ncnn")


def _tail(text: str, n: int = 12) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------- #
# 1. ONNX -> ncnn
# --------------------------------------------------------------------------- #
def _onnx_io(onnx_path: Path) -> tuple[str, list[int], list[str]]:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is a hard dependency of the exporters
        raise ZooError("the 'onnx' package is needed to read the model's inputs/outputs") from e
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # onnx raises several types
        raise ZooError(f"cannot read ONNX file {onnx_path}: {e}") from e
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ZooError(f"{onnx_path}: expected exactly one input, found {[i.name for i in inputs]}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[0] != 1 or min(dims) <= 0:
        raise ZooError(f"{onnx_path}: input must be fixed (1,3,H,W), got {dims}")
    outputs = [o.name for o in model.graph.output]
    return inputs[0].name, dims, outputs


def onnx_to_ncnn(onnx_path, out_dir, stem, *, fp16: bool, timeout: float = 300) -> dict:
    """Convert a fixed-shape UltraFace ONNX file to ``<out_dir>/<stem>.param/.bin`` with pnnx.

    pnnx runs in a scratch directory; only the two ncnn files are moved (atomically)
    into ``out_dir``.  ``fp16`` selects pnnx's fp16 weight storage (``fp16=1``) or fp32
    (``fp16=0``).  Returns ``{"param", "bin", "input_blob", "output_blobs": {"scores": blob,
    "boxes": blob}, "input_shape": [1,3,H,W], "weights": "fp32"|"fp16", "seconds"}``; the
    input shape is also written into the .param's Input layer (``0=W 1=H 2=3``) so that
    :class:`NcnnNet` refuses other sizes.  Raises ZooError with pnnx's last lines when it
    fails or times out, and when the result does not look like the expected network.
    The ONNX file must be self-contained (no external-data files).
    """
    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir)
    if not onnx_path.is_file():
        raise ZooError(f"ONNX file not found: {onnx_path}")
    if not stem or "/" in stem or os.sep in stem:
        raise ZooError(f"invalid output stem {stem!r}")
    _in_name, in_dims, onnx_outputs = _onnx_io(onnx_path)
    if "scores" not in onnx_outputs or "boxes" not in onnx_outputs:
        raise ZooError(f"{onnx_path}: outputs must include 'scores' and 'boxes', found {onnx_outputs}")
    exe = _pnnx_executable()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo_pnnx_") as tmp:
        tmpd = Path(tmp)
        src = tmpd / "model.onnx"
        shutil.copyfile(onnx_path, src)
        files = {k: tmpd / v for k, v in {
            "ncnnparam": "model.ncnn.param", "ncnnbin": "model.ncnn.bin", "ncnnpy": "model_ncnn.py",
            "pnnxparam": "model.pnnx.param", "pnnxbin": "model.pnnx.bin", "pnnxpy": "model_pnnx.py",
            "pnnxonnx": "model.pnnx.onnx"}.items()}
        cmd = [exe, str(src), f"fp16={1 if fp16 else 0}"] + [f"{k}={v}" for k, v in files.items()]
        try:
            proc = subprocess.run(cmd, cwd=tmpd, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise ZooError(f"pnnx timed out after {timeout:g} s converting {onnx_path}") from e
        except OSError as e:
            raise ZooError(f"cannot run pnnx ({exe}): {e}") from e
        log = (proc.stdout or "") + "\n" + (proc.stderr or "")
        pp, bp = files["ncnnparam"], files["ncnnbin"]
        if proc.returncode != 0 or not pp.is_file() or not bp.is_file() or pp.stat().st_size == 0:
            raise ZooError(f"pnnx failed (exit code {proc.returncode}) converting {onnx_path}:\n{_tail(log)}")
        layers, _, convs = _load_pair(pp, bp)
        dtypes = {c.dtype for c in convs.values()}
        want = "fp16" if fp16 else "fp32"
        if dtypes != {want}:
            raise ZooError(f"pnnx wrote {sorted(dtypes)} weights, expected {want}")
        ins = _input_blobs(layers)
        outs = _output_blobs(layers)
        if len(ins) != 1 or len(outs) != 2:
            raise ZooError(f"converted graph has inputs {ins} and outputs {outs}; expected 1 and 2")
        roles = _identify_outputs(pp, bp, ins[0], outs, in_dims, onnx_outputs)
        # record the fixed input shape on the Input layer (0=w 1=h 2=c): pnnx bakes the
        # sizes into Reshape layers, and ncnn silently computes garbage for any other
        # size, so NcnnNet reads this back and refuses other shapes.
        for ly in layers:
            if ly.type == "Input" and ly.get(0) is None:
                ly.set(0, in_dims[3])
                ly.set(1, in_dims[2])
                ly.set(2, in_dims[1])
        final_param = out_dir / f"{stem}.param"
        final_bin = out_dir / f"{stem}.bin"
        _atomic_write(final_bin, bp.read_bytes())
        _atomic_write(final_param, _param_text(layers).encode())
    return {
        "param": str(final_param),
        "bin": str(final_bin),
        "input_blob": ins[0],
        "input_shape": list(in_dims),
        "output_blobs": roles,
        "weights": want,
        "seconds": time.perf_counter() - t0,
    }


def _identify_outputs(param, binf, in_blob, outs, in_dims, onnx_outputs) -> dict[str, str]:
    """Map 'scores'/'boxes' to ncnn blob names by the last dim (K vs 4), else by graph order."""
    x = np.zeros((1, *in_dims[1:]), np.float32)
    with NcnnNet(param, binf, input_blob=in_blob, output_blobs=outs) as net:
        res = net.infer(x)
    last = {b: res[b].shape[-1] for b in outs}
    shapes = {b: res[b].shape for b in outs}
    if any(len(s) != 3 or s[1] != shapes[outs[0]][1] for s in shapes.values()):
        raise ZooError(f"unexpected output shapes {shapes}; expected (1,P,K) and (1,P,4)")
    fours = [b for b in outs if last[b] == 4]
    if len(fours) == 1:
        boxes = fours[0]
        scores = next(b for b in outs if b != boxes)
    elif len(fours) == 2:
        # K == 4: pnnx numbers its outputs out0, out1, ... in the ONNX graph-output order
        ordered = sorted(outs, key=lambda s: (len(s), s))
        rel = [n for n in onnx_outputs if n in ("scores", "boxes")]
        mapping = dict(zip(rel, ordered))
        scores, boxes = mapping["scores"], mapping["boxes"]
    else:
        raise ZooError(f"no output with last dimension 4 among {shapes}")
    return {"scores": scores, "boxes": boxes}


# --------------------------------------------------------------------------- #
# 3. runner
# --------------------------------------------------------------------------- #
class NcnnNet:
    """One loaded ncnn network on the CPU.

    ``with NcnnNet(param, bin, int8=True) as net: outs = net.infer(x)`` with x (N,3,H,W)
    float32; ``outs`` maps each output blob name to an array with the batch dim restored.
    ``input_shape`` (C,H,W) -- or, by default, the ``0=w 1=h 2=c`` of the Input layer that
    :func:`onnx_to_ncnn` records -- makes ``infer`` refuse other sizes (ncnn would not).
    fp16 storage/arithmetic are off unless ``fp16=True``; int8 inference is on only with
    ``int8=True`` (a file holding int8 weights refuses to load without it, since ncnn
    would otherwise read the int8 bytes as float).
    """

    def __init__(self, param_path, bin_path, *, threads: int = 1, fp16: bool = False, int8: bool = False,
                 input_blob: str = "in0", output_blobs: Iterable[str] | None = None,
                 input_shape: Sequence[int] | None = None, lightmode: bool = True):
        try:
            import ncnn
        except ImportError as e:
            raise ZooError("the 'ncnn' Python package is not installed") from e
        self.param_path, self.bin_path = str(param_path), str(bin_path)
        for p in (self.param_path, self.bin_path):
            if not os.path.isfile(p):
                raise ZooError(f"ncnn file not found: {p}")
        layers = read_param(self.param_path)
        self.int8_layer_names = [ly.name for ly in layers if ly.type in _CONV_TYPES and ly.geti(8)]
        if self.int8_layer_names and not int8:
            raise ZooError(f"{self.param_path} holds int8 layers ({len(self.int8_layer_names)}); "
                           "load it with int8=True")
        blobs = {b for ly in layers for b in ly.bottoms + ly.tops}
        if input_blob not in blobs:
            raise ZooError(f"input blob {input_blob!r} not in {self.param_path}; inputs are {_input_blobs(layers)}")
        self.input_blob = input_blob
        if input_shape is None:
            # (C,H,W) from the Input layer's 2=c 1=h 0=w when the file records it
            src = next((ly for ly in layers if ly.type == "Input" and input_blob in ly.tops), None)
            if src is not None and src.geti(0) > 0 and src.geti(1) > 0 and src.geti(2) > 0:
                input_shape = (src.geti(2), src.geti(1), src.geti(0))
        if input_shape is not None:
            input_shape = tuple(int(v) for v in input_shape)[-3:]
        self.input_shape = input_shape
        self.output_blobs = list(output_blobs) if output_blobs is not None else _output_blobs(layers)
        missing = [b for b in self.output_blobs if b not in blobs]
        if missing or not self.output_blobs:
            raise ZooError(f"output blobs {missing or self.output_blobs} not in {self.param_path}; "
                           f"outputs are {_output_blobs(layers)}")
        self.threads, self.fp16, self.int8 = int(threads), bool(fp16), bool(int8)
        self._ncnn = ncnn
        net = ncnn.Net()
        o = net.opt
        o.use_vulkan_compute = False
        o.num_threads = self.threads
        o.lightmode = bool(lightmode)
        o.use_fp16_packed = self.fp16
        o.use_fp16_storage = self.fp16
        o.use_fp16_arithmetic = self.fp16
        o.use_bf16_storage = False
        o.use_int8_inference = self.int8
        o.use_int8_packed = self.int8
        o.use_int8_storage = self.int8
        o.use_int8_arithmetic = self.int8
        rc = net.load_param(self.param_path)
        if rc != 0:
            net.clear()
            raise ZooError(f"ncnn load_param failed ({rc}) for {self.param_path}")
        rc = net.load_model(self.bin_path)
        if rc != 0:
            net.clear()
            raise ZooError(f"ncnn load_model failed ({rc}) for {self.bin_path}")
        self._net = net

    def __enter__(self) -> "NcnnNet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        net, self._net = getattr(self, "_net", None), None
        if net is not None:
            net.clear()

    def infer(self, x: np.ndarray, blobs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Run every sample of x (N,C,H,W) float32; returns {blob: (N, *blob_shape)}.

        ``blobs`` defaults to the output blobs; intermediate blob names work too.
        """
        if self._net is None:
            raise ZooError("NcnnNet is closed")
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[0] < 1:
            raise ZooError(f"ncnn input must be (N,C,H,W), got shape {x.shape}")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ZooError(f"this ncnn model takes input (N,{','.join(map(str, self.input_shape))}), "
                           f"got {tuple(x.shape)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        names = list(blobs) if blobs is not None else self.output_blobs
        ncnn = self._ncnn
        per: dict[str, list[np.ndarray]] = {b: [] for b in names}
        for i in range(x.shape[0]):
            # batch_index picks one (C,H,W) sample out of the 4-D array (pnnx's own recipe);
            # a plain 3-D array does not map correctly in this ncnn build.
            mat = ncnn.Mat(x[i:i + 1], batch_index=0).clone()
            ex = self._net.create_extractor()
            try:
                rc = ex.input(self.input_blob, mat)
                if rc != 0:
                    raise ZooError(f"ncnn rejected input blob {self.input_blob!r} ({rc})")
                for b in names:
                    rc, m = ex.extract(b)
                    if rc != 0:
                        raise ZooError(f"ncnn extract of blob {b!r} failed ({rc}); input shape {x.shape[1:]}")
                    if m.empty():
                        raise ZooError(f"ncnn produced an empty blob {b!r}")
                    per[b].append(np.array(m.numpy(), dtype=np.float32, copy=True))
            finally:
                ex.clear()
        return {b: np.stack(v) for b, v in per.items()}


# --------------------------------------------------------------------------- #
# 2. int8 quantizer
# --------------------------------------------------------------------------- #
def _kl_threshold(hist: np.ndarray, edges_max: float, target_bins: int = 128, stride: int = 2) -> float:
    """Threshold minimising KL(P || Q), P = clipped |x| histogram, Q = P quantised to 128 levels.

    Candidates are every ``stride``-th bin edge from 128 to 2048 (as in ncnn2table, which
    tries every edge); the histogram excludes exact zeros.
    """
    hist = hist.astype(np.float64)
    nbins = hist.size
    bin_w = edges_max / nbins
    if hist.sum() == 0:
        return edges_max
    best_kl, best_i = np.inf, nbins
    tail = np.cumsum(hist[::-1])[::-1]  # tail[i] = sum(hist[i:])
    nz_all = (hist > 0).astype(np.float64)
    for i in list(range(target_bins, nbins, stride)) + [nbins]:
        p = hist[:i].copy()
        if i < nbins:
            p[i - 1] += tail[i]
        total = p.sum()
        if total == 0:
            continue
        # merge the i bins into target_bins groups; spread each group's mass
        # uniformly over its non-empty bins
        bounds = (np.arange(target_bins) * i) // target_bins
        nz = nz_all[:i]
        gsum = np.add.reduceat(hist[:i], bounds)
        gcnt = np.add.reduceat(nz, bounds)
        glen = np.diff(np.append(bounds, i))
        per = np.divide(gsum, gcnt, out=np.zeros_like(gsum), where=gcnt > 0)
        q = np.repeat(per, glen) * nz
        qt = q.sum()
        if qt == 0:
            continue
        ps = p / total
        qs = q / qt
        m = ps > 0
        qv = np.where(qs[m] > 0, qs[m], 1e-12)
        kl = float(np.sum(ps[m] * np.log(ps[m] / qv)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return (best_i + 0.5) * bin_w


def _mse_threshold(hist: np.ndarray, edges_max: float) -> float:
    """Threshold minimising the expected squared error of |x| (rounding inside, clipping outside)."""
    hist = hist.astype(np.float64)
    nbins = hist.size
    w = edges_max / nbins
    centers = (np.arange(nbins) + 0.5) * w
    if hist.sum() == 0:
        return edges_max
    cum_n = np.cumsum(hist)
    cum_x = np.cumsum(hist * centers)
    cum_x2 = np.cumsum(hist * centers * centers)
    tot_n, tot_x, tot_x2 = cum_n[-1], cum_x[-1], cum_x2[-1]
    best_t, best_e = edges_max, np.inf
    for i in range(nbins // 64, nbins):
        t = (i + 1) * w
        step = t / 127.0
        n_out = tot_n - cum_n[i]
        sx = tot_x - cum_x[i]
        sx2 = tot_x2 - cum_x2[i]
        err = cum_n[i] * step * step / 12.0 + (sx2 - 2 * t * sx + t * t * n_out)
        if err < best_e:
            best_e, best_t = err, t
    return float(best_t)


class _ActStats:
    """|x| statistics of one blob: max, a 2048-bin histogram over [0, max], a value sample."""

    def __init__(self):
        self.absmax = 0.0
        self.hist = np.zeros(2048, np.int64)
        self.samples: list[np.ndarray] = []

    def add_max(self, a: np.ndarray) -> None:
        self.absmax = max(self.absmax, float(np.abs(a).max()))

    def add_hist(self, a: np.ndarray) -> None:
        v = np.abs(a.ravel())
        v = v[v > 0]
        if self.absmax > 0 and v.size:
            h, _ = np.histogram(v, bins=self.hist.size, range=(0.0, self.absmax))
            self.hist += h

    def add_sample(self, a: np.ndarray, rng: np.random.Generator, k: int = 50000) -> None:
        v = np.abs(a.ravel())
        v = v[v > 0]
        if v.size > k:
            v = rng.choice(v, k, replace=False)
        self.samples.append(v.astype(np.float32))


def _conv_graph_roles(layers: Sequence[ParamLayer], convs: dict[str, _ConvData]) -> tuple[set, set]:
    """(first convs fed by an Input blob, head convs whose output reaches no other conv)."""
    inputs = set(_input_blobs(layers))
    first = {n for n, c in convs.items() if c.layer.bottoms and c.layer.bottoms[0] in inputs}
    consumers: dict[str, list[ParamLayer]] = {}
    for ly in layers:
        for b in ly.bottoms:
            consumers.setdefault(b, []).append(ly)
    heads = set()
    for n, c in convs.items():
        stack, seen, reaches = list(c.layer.tops), set(), False
        while stack and not reaches:
            b = stack.pop()
            if b in seen:
                continue
            seen.add(b)
            for ly in consumers.get(b, []):
                if ly.type in _CONV_TYPES:
                    reaches = True
                    break
                stack.extend(ly.tops)
        if not reaches:
            heads.add(n)
    return first, heads


def _quantize_weights(c: _ConvData) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (Convolution) / per group (ConvolutionDepthWise) symmetric int8."""
    ly = c.layer
    groups = ly.geti(0) if ly.type == "Convolution" else ly.geti(7, 1)
    w = c.weight.astype(np.float32).reshape(groups, -1)
    amax = np.abs(w).max(axis=1)
    ws = np.where(amax > 0, 127.0 / np.maximum(amax, 1e-30), 1.0).astype(np.float32)
    qw = np.clip(np.round(w * ws[:, None]), -127, 127).astype(np.int8).ravel()
    return qw, ws


def _int8_nbytes(c: _ConvData, n_scales: int) -> int:
    bias = 4 * c.layer.geti(0) if c.bias is not None else 0
    return 4 + _align4(c.weight.size) + bias + 4 * (n_scales + 1)


def _build_int8(layers, blob: bytes, convs: dict[str, _ConvData], act_scales: dict[str, float],
                qweights: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[bytes, bytes]:
    """(param text, bin bytes) with the layers in ``act_scales`` stored as ncnn int8."""
    new_layers = [ParamLayer(ly.type, ly.name, list(ly.bottoms), list(ly.tops), list(ly.params)) for ly in layers]
    by_name = {ly.name: ly for ly in new_layers}
    out = bytearray()
    cursor = 0
    for name, c in sorted(convs.items(), key=lambda kv: kv[1].start):
        out += blob[cursor:c.start]
        cursor = c.end
        if name not in act_scales:
            out += blob[c.start:c.end]  # stays float, bytes unchanged
            continue
        qw, ws = qweights[name]
        out += struct.pack("<I", TAG_INT8) + qw.tobytes() + b"\0" * (_align4(qw.size) - qw.size)
        if c.bias is not None:
            out += c.bias.astype("<f4").tobytes()
        out += ws.astype("<f4").tobytes() + np.array([act_scales[name]], "<f4").tobytes()
        by_name[name].set(8, 2 if c.layer.type == "Convolution" else 1)
    out += blob[cursor:]
    return _param_text(new_layers).encode(), bytes(out)


def _output_error(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """Sum over outputs of mean |got - ref| / std(ref)."""
    return float(sum(np.abs(got[b] - ref[b]).mean() / (ref[b].std() + 1e-12) for b in ref))


def quantize_int8(param_path, bin_path, calib: np.ndarray, out_param, out_bin, *, method: str = "percentile",
                  skip_layers: tuple = (SKIP_AUTO,), auto_keep: float = 0.8, max_size_ratio: float = 0.42,
                  input_blob: str | None = None, percentile: float = 99.99, sensitivity_images: int = 4,
                  threads: int = 1) -> dict:
    """Write an ncnn int8 model (ncnn's own format) from an fp32 (or fp16-stored) ncnn model.

    ``calib`` is the (N,3,H,W) float32 calibration batch, already preprocessed.  Every
    Convolution / ConvolutionDepthWise not kept float gets per-output-channel int8 weights
    (scale 127/max|w_c|) and one input-activation scale 127/T from the statistics of its
    bottom blob over the batch (fp32 run in ncnn); T by ``method``: 'percentile' (default:
    the ``percentile`` of |x|), 'kl' (KL-divergence threshold, like ncnn2table), 'mse'
    (least squared rounding+clipping error) or 'max'.  Measured on the UltraFace nets,
    'kl' clips the rare large activations that mark faces and loses most detections of
    slim-320 when its heads are int8; 'percentile' was the most accurate overall.

    ``skip_layers`` lists layer names to keep fp32 and/or the tokens ``SKIP_FIRST``
    ('@first': convs reading the network input), ``SKIP_HEADS`` ('@heads': convs whose
    output reaches no other conv) and ``SKIP_AUTO`` ('@auto', default: measure each
    layer's sensitivity -- error of the net's outputs with only that layer int8, on the
    first ``sensitivity_images`` calibration images -- then keep fp32 the most sensitive
    layers until they account for ``auto_keep`` of the summed sensitivity, never letting
    the files exceed ``max_size_ratio`` of the input's size).  On UltraFace this keeps the
    small high-resolution early layers fp32 (one activation scale per tensor is what hurts
    there) and quantizes the large late layers and the heads.

    Returns ``{"param", "bin", "method", "int8_layers", "fp32_layers", "activation_scales":
    {layer: s}, "activation_thresholds": {layer: T}, "weight_scales": {layer: [...]},
    "sensitivity": {layer: err} (with '@auto'), "size_bytes", "fp32_size_bytes", "size_ratio"}``.
    """
    if method not in ("kl", "mse", "percentile", "max"):
        raise ZooError(f"unknown int8 calibration method {method!r} (kl, mse, percentile, max)")
    calib = np.asarray(calib)
    if calib.ndim != 4 or calib.shape[0] < 1:
        raise ZooError(f"calibration batch must be (N,3,H,W), got {calib.shape}")
    calib = np.ascontiguousarray(calib, dtype=np.float32)
    layers, blob, convs = _load_pair(param_path, bin_path)
    if any(c.dtype == "int8" or c.layer.geti(8) for c in convs.values()):
        raise ZooError(f"{param_path} is already quantized")
    if not convs:
        raise ZooError(f"{param_path} has no convolution to quantize")
    ins = _input_blobs(layers)
    in_blob = input_blob or (ins[0] if len(ins) == 1 else None)
    if in_blob is None:
        raise ZooError(f"cannot tell the input blob among {ins}; pass input_blob=")
    fp32_size = file_size(param_path, bin_path)

    first, heads = _conv_graph_roles(layers, convs)
    skip: set[str] = set()
    auto = False
    for s in skip_layers:
        if s == SKIP_FIRST:
            skip |= first
        elif s == SKIP_HEADS:
            skip |= heads
        elif s == SKIP_AUTO:
            auto = True
        elif s in convs:
            skip.add(s)
        else:
            raise ZooError(f"skip_layers: no convolution named {s!r} (have {sorted(convs)})")
    candidates = [n for n in convs if n not in skip]

    # ---- activation statistics of every candidate's bottom blob (fp32 run in ncnn) ----
    stats = {n: _ActStats() for n in candidates}
    bottoms = {n: convs[n].layer.bottoms[0] for n in candidates}
    uniq = sorted(set(bottoms.values()))
    rng = np.random.default_rng(0)
    with NcnnNet(param_path, bin_path, threads=threads, input_blob=in_blob, output_blobs=uniq,
                 lightmode=False) as net:
        for i in range(calib.shape[0]):
            r = net.infer(calib[i:i + 1], blobs=uniq)
            for n in candidates:
                a = r[bottoms[n]][0]
                stats[n].add_max(a)
                if method == "percentile":
                    stats[n].add_sample(a, rng)
        if method in ("kl", "mse"):  # second pass: histograms over the now known [0, max]
            for i in range(calib.shape[0]):
                r = net.infer(calib[i:i + 1], blobs=uniq)
                for n in candidates:
                    stats[n].add_hist(r[bottoms[n]][0])

    thresholds: dict[str, float] = {}
    for n in candidates:
        st = stats[n]
        if st.absmax <= 0:
            t = 1.0
        elif method == "max":
            t = st.absmax
        elif method == "percentile":
            v = np.concatenate(st.samples) if st.samples else np.zeros(0, np.float32)
            t = float(np.percentile(v, percentile)) if v.size else st.absmax
            t = min(max(t, 1e-8), st.absmax)
        elif method == "mse":
            t = _mse_threshold(st.hist, st.absmax)
        else:
            t = _kl_threshold(st.hist, st.absmax)
        thresholds[n] = float(t)
    all_scales = {n: float(np.float32(127.0 / thresholds[n])) for n in candidates}
    qweights = {n: _quantize_weights(convs[n]) for n in candidates}

    # ---- '@auto': keep the most sensitive layers (per extra byte) in fp32 within the budget ----
    sensitivity: dict[str, float] = {}
    if auto:
        k = max(1, min(int(sensitivity_images), calib.shape[0]))
        sub = calib[:k]
        with tempfile.TemporaryDirectory(prefix="zoo_int8_") as tmp:
            with NcnnNet(param_path, bin_path, threads=threads, input_blob=in_blob) as net:
                ref = net.infer(sub)
            outs = list(ref)
            for n in candidates:
                ptxt, pbin = _build_int8(layers, blob, convs, {n: all_scales[n]}, qweights)
                pp, bp = Path(tmp) / "s.param", Path(tmp) / "s.bin"
                pp.write_bytes(ptxt)
                bp.write_bytes(pbin)
                with NcnnNet(pp, bp, threads=threads, int8=True, input_blob=in_blob, output_blobs=outs) as net:
                    sensitivity[n] = _output_error(ref, net.infer(sub))
        # bytes if everything is int8, then add back float layers greedily
        ptxt, pbin = _build_int8(layers, blob, convs, all_scales, qweights)
        size = len(ptxt) + len(pbin)
        budget = max_size_ratio * fp32_size
        extra = {n: (convs[n].end - convs[n].start) - _int8_nbytes(convs[n], qweights[n][1].size)
                 for n in candidates}
        total = sum(sensitivity.values())
        covered = 0.0
        for n in sorted(candidates, key=lambda n: sensitivity[n], reverse=True):
            if total <= 0 or covered >= auto_keep * total:
                break
            if size + extra[n] <= budget:
                skip.add(n)
                size += extra[n]
                covered += sensitivity[n]
    act_scales = {n: all_scales[n] for n in candidates if n not in skip}

    ptxt, pbin = _build_int8(layers, blob, convs, act_scales, qweights)
    _atomic_write(Path(out_bin), pbin)
    _atomic_write(Path(out_param), ptxt)
    size = len(ptxt) + len(pbin)
    return {
        "param": str(out_param),
        "bin": str(out_bin),
        "method": method,
        "int8_layers": [n for n in convs if n in act_scales],
        "fp32_layers": [n for n in convs if n not in act_scales],
        "activation_scales": act_scales,
        "activation_thresholds": {n: thresholds[n] for n in act_scales},
        "weight_scales": {n: qweights[n][1].tolist() for n in act_scales},
        "sensitivity": sensitivity,
        "size_bytes": size,
        "fp32_size_bytes": fp32_size,
        "size_ratio": size / fp32_size,
    }
