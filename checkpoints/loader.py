"""The manifest of public checkpoints, and their safe, verified resolution and loading.

Resolution order for a manifest entry: the folder in ``ZOO_CHECKPOINT_DIR`` >
the user cache > a download into the cache by the one pinned fetcher
(zoo.core.upstream: atomic, size and sha256 verified; the checkpoint's path in the
original repository, ``models/pretrained/<name>``, under ``ZOO_UPSTREAM_URL`` when
set, so a mirror serves checkpoints, photos and test material alike). An explicit
path given by the user is loaded as it is (its sha256 is recorded).
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import sys
import tomllib
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from zoo.core import upstream
from zoo.core.errors import ZooError
from zoo.core.fsutil import ENV_CACHE, sha256_file, user_cache

MANIFEST_PATH = Path(__file__).with_name("manifest.toml")
ENV_DIR = "ZOO_CHECKPOINT_DIR"
MAX_CHECKPOINT_BYTES = 1 << 30  # an UltraFace checkpoint is ~1 MB (a few MB with many classes): refuse before reading


@dataclass(frozen=True)
class CheckpointEntry:
    name: str
    arch: str
    train_size: tuple[int, int]
    sha256: str
    bytes: int
    url: str  # the public URL (the original repository at the pinned commit), recorded in cards and `zoo list`
    licence: str
    labels: tuple[str, ...]
    params: int
    widerface_ap: dict = field(default_factory=dict, hash=False, compare=False)
    remote: str = ""  # its path in the original repository, fetched under upstream.base_url()

    def pinned(self) -> upstream.PinnedFile:
        """The checkpoint as a file of the pinned fetcher (its local name: the file name in the cache)."""
        return upstream.PinnedFile(self.name, self.remote or f"{REMOTE_DIR}/{self.name}", self.sha256, self.bytes)


REMOTE_DIR = "models/pretrained"  # where the original repository holds its checkpoints


@lru_cache(maxsize=1)
def manifest() -> dict[str, CheckpointEntry]:
    data = tomllib.loads(MANIFEST_PATH.read_text())
    d = data["defaults"]
    out: dict[str, CheckpointEntry] = {}
    for c in data["checkpoint"]:
        remote = f"{d.get('remote_dir', REMOTE_DIR)}/{c['name']}"
        out[c["name"]] = CheckpointEntry(
            name=c["name"],
            arch=c["arch"],
            train_size=tuple(c["train_size"]),
            sha256=c["sha256"],
            bytes=int(c["bytes"]),
            url=upstream.file_url(remote, upstream.DEFAULT_BASE_URL),  # public, whatever mirror serves the download
            licence=c.get("licence", d["licence"]),
            labels=tuple(c.get("labels", d["labels"])),
            params=int(c["params"]),
            widerface_ap=dict(c.get("widerface_ap", {})),
            remote=remote,
        )
    return out


def cache_dir() -> Path:
    return user_cache("checkpoints")


def verify(path: Path, expected_sha256: str) -> None:
    got = sha256_file(path)
    if got != expected_sha256:
        raise ZooError(
            f"sha256 mismatch for {path}: expected {expected_sha256}, got {got}; "
            "the file is corrupt or not the published checkpoint: delete it and retry"
        )


def resolve(entry: CheckpointEntry, download: bool = True) -> Path:
    """Find (or fetch) a manifest checkpoint and verify its sha256."""
    env = os.environ.get(ENV_DIR)
    if env:
        p = Path(env).expanduser() / entry.name
        if p.is_file():
            verify(p, entry.sha256)
            return p
    cached = cache_dir() / entry.name
    if cached.is_file():
        verify(cached, entry.sha256)
        return cached
    if not download:
        raise ZooError(f"checkpoint {entry.name} not found in {ENV_DIR} or the cache ({cached.parent})")
    return _download(entry, cached)


def _download(entry: CheckpointEntry, dest: Path) -> Path:
    """Fetch the checkpoint into the cache through the pinned fetcher (renamed into place once verified)."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ZooError(f"cannot create the checkpoint cache {dest.parent}: {e.strerror}; set {ENV_CACHE} to a writable folder") from None
    f = entry.pinned()
    if sys.stderr.isatty():  # a note on a terminal only: the download is ~1 MB
        print(f"downloading {entry.name} ({entry.bytes} bytes) from {upstream.file_url(f.remote)}", file=sys.stderr, flush=True)
    upstream.fetch([f], dest.parent, hint=(
        f"offline? put the checkpoint files in a folder and set {ENV_DIR}=/path/to/that/folder, "
        f"or set {upstream.ENV_URL} to a mirror of the original repository"))
    return dest


class LazyStateDict(Mapping):
    """A verified state dict loaded on first use: a worker that never reads the weights (a converter
    working from our ONNX, a parity run against stored reference outputs) never imports torch."""

    def __init__(self, path: Path, expected_sha256: str | None = None):
        self.path, self.expected_sha256 = Path(path), expected_sha256
        self._sd = None

    def _load(self):
        if self._sd is None:
            self._sd = load_state_dict(self.path, self.expected_sha256)
        return self._sd

    def __getitem__(self, key):
        return self._load()[key]

    def __iter__(self):
        return iter(self._load())

    def __len__(self):
        return len(self._load())

    @property
    def loaded(self) -> bool:
        return self._sd is not None


def load_state_dict(path: Path, expected_sha256: str | None = None) -> "OrderedDict[str, object]":
    """Load a checkpoint file safely (``weights_only=True``) into a plain state dict of float32 tensors.

    Every way a hostile or damaged file can fail ends in one ZooError line: a file torch cannot
    parse is "truncated or corrupt"; a zip whose entries declare more bytes than the file holds is
    refused before torch reads it. Weights are checked after loading (`_checked`): floating weights
    of another precision (float16, bfloat16, float64) are converted to float32, the precision the
    model runs in; integer, bool, complex or quantized weights are refused naming the key, as are
    NaN/Inf values (no parity is meaningful against them) and tensors that claim more elements
    than their storage holds. ``num_batches_tracked`` counters must be integers and are kept.
    """
    import torch  # heavy: deferred so commands that load no weights stay fast

    path = Path(path)
    if not path.exists():
        raise ZooError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise ZooError(f"checkpoint is not a file: {path}")
    if expected_sha256:
        verify(path, expected_sha256)
    try:
        size = path.stat().st_size
        if size > MAX_CHECKPOINT_BYTES:
            raise ZooError(f"checkpoint {path} is {size >> 20} MiB, far more than any UltraFace checkpoint "
                           f"(~1 MB); files over {MAX_CHECKPOINT_BYTES >> 20} MiB are not read")
        data = path.read_bytes()  # small (~1 MB); read once, so the checks and torch see the same bytes
    except OSError as e:
        raise ZooError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if not data:
        raise ZooError(f"checkpoint {path} is empty (0 bytes)")
    if data[:4] == b"PK\x03\x04":
        _check_zip(path, data)
    try:
        with warnings.catch_warnings():  # torch's deprecation notes about a file's format are not the user's business
            warnings.simplefilter("ignore")
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        detail = msg.split("WeightsUnpickler error:", 1)[-1].strip() if "WeightsUnpickler error:" in msg else msg.strip()
        detail = _first_line(detail, "UnpicklingError")
        python_objects = "Unsupported global" in msg or "GLOBAL" in msg or "not an allowed global" in msg
        if python_objects and _pickles_complete(data):  # a cut or damaged name also reads as an odd global
            raise ZooError(
                f"checkpoint {path} was refused by torch.load(weights_only=True): it holds Python objects "
                f"({detail[:120]}), not a plain state dict; re-save it with torch.save(model.state_dict(), path)"
            ) from None
        raise ZooError(f"checkpoint {path} is truncated or corrupt ({detail[:120]})") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse an untrusted file is a corrupt file, never a traceback
        # seen on cut and damaged files: struct.error, IndexError, EOFError, RuntimeError (torch's readers),
        # zipfile.BadZipFile, ValueError, TypeError, KeyError, OverflowError, MemoryError, UnicodeDecodeError
        raise ZooError(f"checkpoint {path} is truncated or corrupt ({_first_line(str(e), type(e).__name__)[:160]})") from None
    if isinstance(obj, dict) and not _is_tensor_dict(obj):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict) and _is_tensor_dict(obj[key]):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not _is_tensor_dict(obj):
        raise ZooError(f"checkpoint {path} is not a state dict of tensors (got {type(obj).__name__})")
    if all(k.startswith("module.") for k in obj):
        obj = OrderedDict((k[len("module."):], v) for k, v in obj.items())
    return OrderedDict((k, _checked(path, k, v)) for k, v in obj.items())


def _first_line(text: str, default: str) -> str:
    """The first sentence of an exception's text (torch appends paragraphs of advice), or ``default``."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", lines[0])[0] if lines else default


def _pickles_complete(data: bytes) -> bool:
    """Whether the checkpoint's pickles read through to their STOP opcodes (pickletools runs no code): the
    zip's data.pkl, or the legacy file's magic, protocol, system-info and state-dict pickles."""
    try:
        if data[:4] == b"PK\x03\x04":
            z = zipfile.ZipFile(io.BytesIO(data))
            stream, count = io.BytesIO(z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))), 1
        else:
            stream, count = io.BytesIO(data), 4
        for _ in range(count):
            for _ in pickletools.genops(stream):
                pass
    except Exception:  # noqa: BLE001 - whatever stops the reader means the stream is incomplete
        return False
    return True


def _check_zip(path: Path, data: bytes) -> None:
    """Refuse a zip checkpoint whose central directory promises more than the file holds (or names an
    entry twice), before torch allocates or inflates anything. A zip Python cannot parse is left to torch."""
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except Exception:  # noqa: BLE001 - not parseable here: torch.load decides (and reports it as corrupt)
        return
    seen = set()
    for i in infos:
        if i.filename in seen:
            raise ZooError(f"checkpoint {path} is truncated or corrupt (zip entry {i.filename!r} appears twice)")
        seen.add(i.filename)
        if i.file_size > len(data) or i.compress_size > len(data) or i.header_offset > len(data):
            raise ZooError(
                f"checkpoint {path} is truncated or corrupt (zip entry {i.filename!r} declares "
                f"{max(i.file_size, i.compress_size)} bytes, the file has {len(data)})"
            )


def _checked(path: Path, key: str, t):
    """One tensor of a loaded state dict, checked and as the model wants it (see `load_state_dict`)."""
    import torch  # heavy: loaded by load_state_dict already

    where = f"checkpoint {path}: {key!r}"
    if t.layout != torch.strided or t.is_nested or t.is_quantized or t.device.type != "cpu":
        kind = "quantized" if t.is_quantized else f"{t.layout} on {t.device.type}"
        raise ZooError(f"{where} is a {kind} tensor, not a dense CPU tensor of weights")
    t = t.detach()
    if t.numel() and t.numel() * t.element_size() > t.untyped_storage().nbytes():
        raise ZooError(f"{where} is truncated or corrupt (shape {tuple(t.shape)} needs more than its "
                       f"{t.untyped_storage().nbytes()}-byte storage)")
    if key.rsplit(".", 1)[-1] == "num_batches_tracked":
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ZooError(f"{where} holds {str(t.dtype).removeprefix('torch.')}, a BatchNorm counter must be an integer")
        return t
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise ZooError(f"{where} holds {str(t.dtype).removeprefix('torch.')} values, not float32/float16/bfloat16/"
                       "float64 weights; re-save the model with float weights")
    t32 = t.to(torch.float32)  # float16/bfloat16: exact; float64: rounded to the precision the model runs in
    finite = np.isfinite(t32.numpy())  # NumPy: far cheaper than torch for hundreds of small tensors
    if not finite.all():
        if t.dtype == torch.float64 and np.isfinite(t.numpy()).all():
            raise ZooError(f"{where} holds float64 values beyond the float32 range")
        raise ZooError(f"{where} holds {int(finite.size - finite.sum())} NaN/Inf value(s) of {t.numel()}; a "
                       "checkpoint with non-finite weights cannot be exported or proven")
    return t32


def _is_tensor_dict(d: dict) -> bool:
    import torch  # heavy: loaded by load_state_dict already

    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


AP_LEVELS = ("easy", "medium", "hard")


def published() -> dict:
    """The original project's published figures (``[published]`` of manifest.toml), for reference rows.

    ``{"source", "sizes_mb": [{model, size_mb}], "latency": {device, runtime, precision,
    input, cores, rows: [{model, ms}]}, "widerface_ap": [{model, "WxH": [easy, medium, hard]}]}``.
    The WIDER FACE rows of our own checkpoints come from their ``widerface_ap`` entries
    (one column per training size), after the other detectors' rows.
    """
    p = tomllib.loads(MANIFEST_PATH.read_text())["published"]
    ours = []
    for stem in p["widerface_ap_from_checkpoints"]:
        entries = sorted((e for e in manifest().values() if e.name.startswith(f"{stem}-") and e.widerface_ap),
                         key=lambda e: e.train_size)
        if not entries:
            raise ZooError(f"{MANIFEST_PATH}: no checkpoint {stem}-* with widerface_ap for [published]")
        ours.append({"model": stem, **{"x".join(map(str, e.train_size)): [e.widerface_ap[k] for k in AP_LEVELS]
                                       for e in entries}})
    lat = p["latency"]
    return {
        "source": p["source"],
        "sizes_mb": [{"model": r["model"], "size_mb": r["size_mb"]} for r in p["sizes_mb"]],
        "latency": {**{k: lat[k] for k in ("device", "runtime", "precision", "input", "cores")},
                    "rows": [{"model": r["model"], "ms": r["ms"]} for r in lat["rows"]]},
        "widerface_ap": [dict(r) for r in p["widerface_ap"]] + ours,
    }
