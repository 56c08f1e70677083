"""The golden kit of a release: the golden images, PyTorch's outputs on them and the expected
detections, so `zoo verify` can re-prove every artifact without the checkpoint."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from zoo.checkpoints.resolve import ResolvedModel
from zoo.core.fsutil import atomic_write_bytes, atomic_write_text, sha256_file
from zoo.core.images import builtin_images, load_batch
from zoo.core.model.processing import postprocess
from zoo.core.runtime import TorchRunner
from zoo.pipeline.reference import plan_references, read_or_compute

GOLDEN = "golden"
OUTPUTS = ("scores", "boxes", "locations")


def golden_images() -> list[Path]:
    return builtin_images()


def image_rels(paths: list[str]) -> list[str]:
    """The golden images among a release's file paths."""
    return [p for p in paths if p.startswith(f"{GOLDEN}/images/")]


def reference_dir(folder: Path, model: str) -> Path:
    return Path(folder) / GOLDEN / model


def write_golden(out: Path, resolved: ResolvedModel) -> list[str]:
    """Reference outputs (PyTorch) and expected detections for the golden images; returns relative paths."""
    rels = []
    imgs = golden_images()
    for p in imgs:
        rel = f"{GOLDEN}/images/{p.name}"
        if not (out / rel).is_file() or sha256_file(out / rel) != sha256_file(p):
            atomic_write_bytes(out / rel, p.read_bytes())
        rels.append(rel)
    meta = resolved.meta().with_(head="raw")
    x, names, sizes = load_batch(imgs, *meta.input_size)
    # PyTorch's outputs come from the reference cache when an earlier run stored them (a resumed release
    # then never imports torch); computed here otherwise, and stored for the next run
    (key, cached), = plan_references(resolved.checkpoint_sha256, resolved.meta().to_dict(), ["raw"],
                                     [str(p) for p in imgs]).values()
    def compute() -> dict:
        with TorchRunner(meta, resolved.state_dict) as r:
            return r.infer(x)

    ref = read_or_compute(cached, key, "raw", len(imgs), meta.prior_count, meta.num_classes, compute)
    mid = resolved.spec.id
    for name in OUTPUTS:
        buf = io.BytesIO()
        np.save(buf, ref[name].astype(np.float32))
        rel = f"{GOLDEN}/{mid}/{name}.npy"
        atomic_write_bytes(out / rel, buf.getvalue())
        rels.append(rel)
    dets = {
        Path(n).name: [d.to_json() for d in postprocess(ref["scores"][i], ref["boxes"][i], *sizes[i], meta.labels)]
        for i, n in enumerate(names)
    }
    rel = f"{GOLDEN}/{mid}/detections.json"
    atomic_write_text(out / rel, json.dumps({"model": mid, "score_threshold": 0.7, "iou_threshold": 0.3,
                                             "candidate_size": 200, "detections": dets}, indent=2) + "\n")
    rels.append(rel)
    return rels
