"""The PyTorch reference outputs of one model on one parity set, computed once and shared.

Every artifact's parity compares its outputs with the PyTorch model's on the same preprocessed
images. Computing them in every worker made each worker import torch and run the model again; now
`references` asks one worker (kind "reference", zoo.pipeline.worker) for the heads an export needs,
keeps them in the user cache (``$ZOO_CACHE_DIR/reference/<key>.npz``, the key hashing everything
they depend on: checkpoint, model facts, head, the images by sha256, our version and torch's), and
hands their paths to the workers, which then import torch only when they convert from PyTorch.

The same worker also writes the verified weights as a NumPy archive for the run (``weights``):
a target that builds its own network from the weights (TFLite) reads them without torch.

A cached file is input like any other: `read_reference` checks its key, names, dtypes, shapes and
values; a file that fails is ignored and recomputed, never trusted.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import io
import zipfile
from pathlib import Path

import numpy as np

from zoo.core.version import __version__
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes, sha256_file, user_cache
from zoo.core import shift
from zoo.core.meta import ArtifactMeta

CACHE = "reference"
TIMEOUT = 900.0  # seconds: one model's forward on the parity images, per head
NAMES = {"raw": ("scores", "boxes", "locations"), "decoded": ("scores", "boxes")}
#: a head's reference on the shift gate's mosaics of the parity photos (zoo.core.shift) is stored as the
#: head "<head>@shift": its own key (the layouts in it), the mosaics as its images
SHIFT = "@shift"


def shift_head(head: str) -> str:
    return head + SHIFT


def base_head(head: str) -> str:
    """The network head of a reference name ("raw@shift" -> "raw")."""
    return head[: -len(SHIFT)] if head.endswith(SHIFT) else head


def batch_size(head: str, images: int) -> int:
    """How many inputs the reference ``head`` holds for ``images`` parity photos (the mosaics for a shift head)."""
    return len(shift.plan(images)) if head.endswith(SHIFT) else images


def _torch_version() -> str:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def reference_key(checkpoint_sha256: str, meta: dict, head: str, image_shas: list[str]) -> str:
    facts = {"checkpoint": checkpoint_sha256, "arch": meta.get("arch"), "input_size": meta.get("input_size"),
             "labels": meta.get("labels"), "num_classes": meta.get("num_classes"), "head": head,
             "images": list(image_shas), "zoo": __version__, "torch": _torch_version()}
    if head.endswith(SHIFT):  # the mosaics' layouts: other layouts, another reference
        facts["shift"] = {"version": shift.VERSION, "mosaics": [[m.name, list(m.photos)] for m in shift.plan(len(image_shas))]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def read_reference(path: Path, key: str, head: str, images: int, priors: int, classes: int) -> dict | None:
    """The outputs stored at ``path`` if they are the reference ``key`` in the expected shape, else None."""
    names = NAMES.get(base_head(head), ())
    want = set(names) | {"key"}
    try:
        with np.load(path, allow_pickle=False) as z:
            if set(z.files) != want:
                return None
            if str(z["key"]) != key:
                return None
            out = {n: z[n] for n in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    shapes = {"scores": (images, priors, classes), "boxes": (images, priors, 4), "locations": (images, priors, 4)}
    for n, a in out.items():
        if a.dtype != np.float32 or a.shape != shapes[n] or not np.isfinite(a).all():
            return None
    return out


def write_reference(path: Path, key: str, out: dict) -> None:
    """Atomically (zoo.core.fsutil): a temporary name in the same folder, then a rename."""
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), **{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def read_or_compute(path: Path, key: str, head: str, images: int, priors: int, classes: int, compute) -> dict:
    """The reference ``key`` stored at ``path`` (checked by `read_reference`), else ``compute()``, stored
    there for the next run; a cache that cannot be written only costs the next run the computation."""
    got = read_reference(path, key, head, images, priors, classes)
    if got is not None:
        return got
    out = compute()
    try:
        write_reference(path, key, {n: out[n] for n in NAMES[base_head(head)]})
    except (OSError, ZooError):
        pass
    return out


def image_shas(images: list[str]) -> list[str]:
    return [sha256_file(Path(p)) for p in images]


def plan_references(checkpoint_sha256: str, meta: dict, heads: list[str], images: list[str],
                    shas: list[str] | None = None) -> dict[str, tuple[str, Path]]:
    """head -> (key, cache path) of the references an export needs."""
    shas = shas if shas is not None else image_shas(images)
    out = {}
    for h in sorted(set(heads)):
        key = reference_key(checkpoint_sha256, meta, h, shas)
        out[h] = (key, user_cache(CACHE) / f"{key}.npz")
    return out


def reference_job(checkpoint: str, checkpoint_sha256: str, meta: dict, heads: list[str], images: list[str],
                  threads: int = 1, weights: str | None = None) -> tuple[dict, dict | None]:
    """(references, job): the references of ``heads`` (head -> [key, path], for the workers) and the
    worker job that computes those not cached yet (and writes ``weights``), or None when all are."""
    planned = plan_references(checkpoint_sha256, meta, sorted(set(heads)), images)
    refs = {h: [k, str(pth)] for h, (k, pth) in planned.items()}
    m = ArtifactMeta.from_dict(meta)
    missing = {h: v for h, v in refs.items()
               if read_reference(Path(v[1]), v[0], h, batch_size(h, len(images)), m.prior_count, m.num_classes) is None}
    if not missing and not weights:
        return refs, None
    return refs, {"kind": "reference", "meta": meta, "images": list(images), "heads": missing, "weights": weights,
                  "threads": threads, "checkpoint": checkpoint, "checkpoint_sha256": checkpoint_sha256}

