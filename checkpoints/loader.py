"""The manifest of public checkpoints, and their safe, verified resolution and loading.

Resolution order for a manifest entry: the folder in ``ZOO_CHECKPOINT_DIR`` >
the user cache > a download into the cache (atomic, sha256 verified). An
explicit path given by the user is loaded as it is (its sha256 is recorded).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_path, sha256_file

MANIFEST_PATH = Path(__file__).with_name("manifest.toml")
ENV_DIR = "ZOO_CHECKPOINT_DIR"
ENV_CACHE = "ZOO_CACHE_DIR"


@dataclass(frozen=True)
class CheckpointEntry:
    name: str
    arch: str
    train_size: tuple[int, int]
    sha256: str
    bytes: int
    url: str
    licence: str
    labels: tuple[str, ...]
    params: int
    widerface_ap: dict = field(default_factory=dict, hash=False, compare=False)


@lru_cache(maxsize=1)
def manifest() -> dict[str, CheckpointEntry]:
    data = tomllib.loads(MANIFEST_PATH.read_text())
    d = data["defaults"]
    out: dict[str, CheckpointEntry] = {}
    for c in data["checkpoint"]:
        out[c["name"]] = CheckpointEntry(
            name=c["name"],
            arch=c["arch"],
            train_size=tuple(c["train_size"]),
            sha256=c["sha256"],
            bytes=int(c["bytes"]),
            url=c.get("url", d["url_base"] + c["name"]),
            licence=c.get("licence", d["licence"]),
            labels=tuple(c.get("labels", d["labels"])),
            params=int(c["params"]),
            widerface_ap=dict(c.get("widerface_ap", {})),
        )
    return out


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser() / "checkpoints"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ultraface-zoo" / "checkpoints"


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
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ZooError(f"cannot create the checkpoint cache {dest.parent}: {e.strerror}; set {ENV_CACHE} to a writable folder") from None
    with atomic_path(dest, "part") as tmp:  # renamed into place only once the sha256 matches
        h = hashlib.sha256()
        with open(tmp, "wb") as out:
            try:
                resp = urllib.request.urlopen(entry.url, timeout=30)
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise ZooError(
                    f"cannot download {entry.name} from {entry.url} ({reason}); offline? put the checkpoint "
                    f"files in a folder and set {ENV_DIR}=/path/to/that/folder"
                ) from None
            total = int(resp.headers.get("Content-Length") or entry.bytes)
            bar = None
            if sys.stderr.isatty():
                from tqdm import tqdm  # optional nicety: only on a terminal

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=entry.name, file=sys.stderr)
            with resp:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    h.update(chunk)
                    if bar:
                        bar.update(len(chunk))
            if bar:
                bar.close()
        if h.hexdigest() != entry.sha256:
            raise ZooError(
                f"sha256 mismatch for downloaded {entry.name}: expected {entry.sha256}, got {h.hexdigest()}; "
                "nothing was saved, retry or use ZOO_CHECKPOINT_DIR"
            )
    return dest


def load_state_dict(path: Path, expected_sha256: str | None = None) -> "OrderedDict[str, object]":
    """Load a checkpoint file safely (``weights_only=True``) into a plain state dict of tensors."""
    import torch  # heavy: deferred so commands that load no weights stay fast

    path = Path(path)
    if not path.exists():
        raise ZooError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise ZooError(f"checkpoint is not a file: {path}")
    if expected_sha256:
        verify(path, expected_sha256)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        detail = msg.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0] if "WeightsUnpickler error:" in msg else msg.strip()[:120]
        if "Unsupported global" in msg or "GLOBAL" in msg or "not an allowed global" in msg:
            raise ZooError(
                f"checkpoint {path} was refused by torch.load(weights_only=True): it holds Python objects "
                f"({detail[:120]}), not a plain state dict; re-save it with torch.save(model.state_dict(), path)"
            ) from None
        raise ZooError(f"checkpoint {path} is truncated or corrupt ({detail[:120]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"checkpoint {path} is truncated or corrupt ({first[:160]})") from None
    if isinstance(obj, dict) and not _is_tensor_dict(obj):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict) and _is_tensor_dict(obj[key]):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not _is_tensor_dict(obj):
        raise ZooError(f"checkpoint {path} is not a state dict of tensors (got {type(obj).__name__})")
    if all(k.startswith("module.") for k in obj):
        obj = OrderedDict((k[len("module."):], v) for k, v in obj.items())
    return OrderedDict(obj)


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
