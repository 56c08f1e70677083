"""The ncnn file format: the text ``.param`` graph and the ``.bin`` weights that go with it.

ncnn int8 layout (what ncnn's own ``ncnn2int8`` writes and ``Convolution::load_model`` reads):

* ``.param``: the layer line gets ``8=<int8_scale_term>``: 2 for ``Convolution``
  (per-output-channel weight scales), 1 for ``ConvolutionDepthWise`` (per-group weight scales).
* ``.bin``, per quantized layer, in this order: weight as a tagged blob (uint32 tag
  ``0x000D4B38`` + ``weight_data_size`` int8 bytes, zero padded to a multiple of 4), bias as
  raw float32 (``num_output`` values, untagged, only if ``5=1``), then ``num_output`` (or
  ``group``) float32 weight scales, then one float32 bottom-blob (input activation) scale.
  Scales are multiplicative: ``q = clamp(round(x * scale), -127, 127)``.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from zoo.core.errors import ZooError

TAG_FP32 = 0x00000000
TAG_FP32_ALT = 0x0002C056
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38

CONV_TYPES = ("Convolution", "ConvolutionDepthWise")
# ncnn layer types that carry no data in the .bin (the only ones the bin
# walker lets through besides the convolutions).
_WEIGHTLESS = {
    "Input", "ReLU", "Split", "Concat", "Reshape", "Permute", "Softmax", "Sigmoid",
    "BinaryOp", "Eltwise", "Pooling", "Flatten", "Crop", "Slice", "Clip", "Noop",
    "Dropout", "HardSwish", "HardSigmoid", "Swish", "Exp", "UnaryOp", "Interp",
    "ShuffleChannel", "Squeeze", "ExpandDims", "Mish", "TanH", "ELU", "Tile",
    "Reduction", "ArgMax",
}


# --------------------------------------------------------------------------- .param
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


def param_text(layers: Sequence[ParamLayer]) -> str:
    """The text of a .param file holding ``layers``."""
    blobs: set[str] = set()
    for ly in layers:
        blobs.update(ly.bottoms)
        blobs.update(ly.tops)
    return "7767517\n" + f"{len(layers)} {len(blobs)}\n" + "".join(ly.line() + "\n" for ly in layers)


def input_blobs(layers: Sequence[ParamLayer]) -> list[str]:
    return [t for ly in layers if ly.type == "Input" for t in ly.tops]


def output_blobs(layers: Sequence[ParamLayer]) -> list[str]:
    consumed = {b for ly in layers for b in ly.bottoms}
    return [t for ly in layers for t in ly.tops if t not in consumed]


def rename_blobs(layers: Sequence[ParamLayer], names: dict[str, str]) -> None:
    """Rename blobs in place, ``{old: new}``, wherever a layer reads or writes them. A new name that
    another blob already has is refused (two blobs of one name would silently become one)."""
    blobs = {b for ly in layers for b in ly.bottoms + ly.tops}
    missing = sorted(set(names) - blobs)
    if missing:
        raise ZooError(f"cannot rename blobs {missing}: not in the graph")
    new = list(names.values())
    clash = sorted({n for n in new if n in blobs and n not in names} | {n for n in new if new.count(n) > 1})
    if clash:
        raise ZooError(f"cannot rename blobs to {clash}: the graph already has a blob of that name")
    for ly in layers:
        ly.bottoms = [names.get(b, b) for b in ly.bottoms]
        ly.tops = [names.get(t, t) for t in ly.tops]


# --------------------------------------------------------------------------- .bin
@dataclass
class ConvData:
    """One (depthwise) convolution's data as stored in the .bin, at bytes [start, end)."""

    layer: ParamLayer
    start: int
    end: int
    dtype: str  # fp32 / fp16 / int8
    weight: np.ndarray  # float32 (decoded) or int8 as stored
    bias: np.ndarray | None
    weight_scales: np.ndarray | None
    bottom_scale: float | None


def align4(n: int) -> int:
    return (n + 3) & ~3


def walk_bin(layers: Sequence[ParamLayer], blob: bytes, where: str) -> dict[str, ConvData]:
    """Decode the weights of every (depthwise) convolution; check the file is consumed exactly."""
    pos = 0
    out: dict[str, ConvData] = {}

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
            return "fp16", np.frombuffer(take(align4(2 * n))[:2 * n], "<f2").astype(np.float32)
        if tag == TAG_INT8:
            return "int8", np.frombuffer(take(align4(n))[:n], np.int8).copy()
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
        elif ly.type in CONV_TYPES:
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
            out[ly.name] = ConvData(ly, start, pos, dtype, weight, bias, wsc, bsc)
        elif ly.type not in _WEIGHTLESS:
            raise ZooError(f"{where}: layer {ly.name} of type {ly.type} is not supported by the ncnn tools")
    if pos != len(blob):
        raise ZooError(f"{where}: .bin has {len(blob) - pos} unread trailing bytes (param/bin mismatch)")
    return out


def load_pair(param_path, bin_path) -> tuple[list[ParamLayer], bytes, dict[str, ConvData]]:
    """(layers, .bin bytes, {conv name: its data}) of a .param/.bin pair."""
    layers = read_param(param_path)
    try:
        blob = Path(bin_path).read_bytes()
    except OSError as e:
        raise ZooError(f"cannot read ncnn bin {bin_path}: {e}") from e
    return layers, blob, walk_bin(layers, blob, str(bin_path))


def weight_storage(param_path, bin_path) -> dict[str, str]:
    """{conv layer name: 'fp32' | 'fp16' | 'int8'} as actually stored in the .bin."""
    _, _, convs = load_pair(param_path, bin_path)
    return {k: v.dtype for k, v in convs.items()}


def int8_layers(layers: Sequence[ParamLayer] | str | os.PathLike) -> list[str]:
    """Names of the layers whose .param line asks for int8 (``8=`` non-zero); a path or parsed layers."""
    if isinstance(layers, (str, os.PathLike)):
        layers = read_param(layers)
    return [ly.name for ly in layers if ly.type in CONV_TYPES and ly.geti(8)]


def file_size(*paths) -> int:
    return sum(os.path.getsize(p) for p in paths)
