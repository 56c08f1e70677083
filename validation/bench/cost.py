"""Compute cost of a model: conv multiply-accumulates and parameters of the PyTorch network, cached."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from zoo.checkpoints.loader import cache_dir
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text


def _cost_cache_path() -> Path | None:
    """A small JSON cache of model costs in the user cache, keyed by the network code's hash."""
    try:
        return cache_dir().parent / "model_cost.json"
    except (RuntimeError, KeyError, OSError):  # no home folder: no cache, which is fine
        return None


def _nets_source_hash() -> str:
    spec = importlib.util.find_spec("zoo.core.model.nets")  # the file, without importing torch
    try:
        return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()[:16]
    except (OSError, TypeError, AttributeError):
        return "unknown"


@lru_cache(maxsize=None)
def model_cost(arch: str, num_classes: int, width: int, height: int) -> dict:
    """Conv multiply-accumulates for one W x H image, and the parameter count, of the PyTorch model.

    Cached per (arch, classes, W, H) in memory and in the user cache (keyed by
    the hash of zoo/core/model/nets.py, so a changed network is recounted).
    """
    key = f"{arch}-{int(num_classes)}-{int(width)}x{int(height)}"
    cache = _cost_cache_path()
    version = _nets_source_hash()
    known = _read_cache(cache, version)
    hit = known.get(key)
    if isinstance(hit, dict) and isinstance(hit.get("macs"), int) and isinstance(hit.get("params"), int):
        return {"macs": hit["macs"], "params": hit["params"]}
    cost = count_cost(arch, num_classes, width, height)
    if cache is not None:
        data = {version: {**_read_cache(cache, version), key: cost}}  # older network versions are dropped
        try:
            atomic_write_text(cache, json.dumps(data, indent=1, sort_keys=True) + "\n")
        except ZooError:
            pass  # no cache is fine
    return cost


def _read_cache(cache: Path | None, version: str) -> dict:
    """The cached costs of this network version (empty when there is no readable cache)."""
    if cache is None:
        return {}
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    mine = data.get(version) if isinstance(data, dict) else None
    return mine if isinstance(mine, dict) else {}


def count_cost(arch: str, num_classes: int, width: int, height: int) -> dict:
    """Count, uncached: MACs per Conv2d = output elements x (in_channels / groups) x kh x kw.

    Forward hooks see the real feature-map sizes; BatchNorm, activations, softmax
    and box decoding are not counted (a rounding error).
    """
    import torch  # heavy: only when a cost is not cached

    from zoo.core.model.nets import UltraFace  # imports torch: only when a cost is not cached

    net = UltraFace(arch, int(num_classes), int(width), int(height), head="raw").eval()
    macs = [0]

    def hook(mod, _inp, out):
        kh, kw = mod.kernel_size
        macs[0] += int(out[0].numel()) * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.inference_mode():
            net(torch.zeros(1, 3, int(height), int(width)))
    finally:
        for h in handles:
            h.remove()
    return {"macs": macs[0], "params": int(sum(p.numel() for p in net.parameters()))}


def cost_for_meta(meta: dict) -> dict:
    """The cost of the model an artifact's metadata describes; None values when it does not say."""
    try:
        w, h = meta["input_size"]
        return model_cost(meta["arch"], len(meta["labels"]), int(w), int(h))
    except (KeyError, ValueError, TypeError):
        return {"macs": None, "params": None}
