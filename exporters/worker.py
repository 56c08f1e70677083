"""The isolated worker: one export (or one artifact check) per process.

    python -m exporters.worker JOB.json RESULT.json

A converter that crashes, hangs or prints megabytes of logs only takes this
process down; the parent reads RESULT.json (absent = crash) and moves on.
"""
from __future__ import annotations

import sys
from pathlib import Path


def _parity(runner, state_dict, meta, images: list[str]) -> dict:
    from validation.parity import ParityInput, compare
    from validation.runners import TorchRunner
    from zoo.images import load_batch

    x, names, sizes = load_batch([Path(p) for p in images], *meta.input_size)
    data = ParityInput(x, [Path(n).name for n in names], sizes)
    ref_head = "decoded" if meta.head == "nms" else meta.head
    with TorchRunner(meta.with_(target="pytorch", precision="fp32", head=ref_head), state_dict) as ref_runner:
        ref = ref_runner.infer(x)
    with runner:
        got = runner.infer(x)
    return compare(ref, got, data, meta.labels, meta.prior_count, meta.precision)


def _golden(target, meta, job: dict) -> dict:
    """Run the golden images through the artifact and compare with the stored PyTorch outputs."""
    import numpy as np

    from validation.parity import ParityInput, compare
    from zoo.images import load_batch

    ref_dir = Path(job["reference_dir"])
    ref = {p.stem: np.load(p) for p in sorted(ref_dir.glob("*.npy"))}
    x, names, sizes = load_batch([Path(p) for p in job["images"]], *meta.input_size)
    runner = target.runner(Path(job["primary"]), meta, threads=job.get("threads", 1))
    with runner:
        got = runner.infer(x)
    return compare(ref, got, ParityInput(x, [Path(n).name for n in names], sizes), meta.labels, meta.prior_count, meta.precision)


def run(job: dict) -> dict:
    from checkpoints.loader import load_state_dict
    from exporters import get_target
    from exporters.base import ExportRequest, write_sidecar
    from zoo.meta import ArtifactMeta

    target = get_target(job["target"])
    target.require()
    meta = ArtifactMeta.from_dict(job["meta"])
    if job["kind"] == "golden":
        return {"ok": True, "parity": _golden(target, meta, job)}
    state_dict = load_state_dict(Path(job["checkpoint"]), job["checkpoint_sha256"])
    if job["kind"] == "check":
        primary = Path(job["primary"])
        runner = target.runner(primary, meta, threads=job.get("threads", 1), runtime=job.get("runtime"))
        return {"ok": True, "parity": _parity(runner, state_dict, meta, job["images"])}
    out_dir = Path(job["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    req = ExportRequest(
        meta=meta,
        state_dict=state_dict,
        out_dir=out_dir,
        stem=job["stem"],
        onnx_path=Path(job["onnx_path"]) if job.get("onnx_path") else None,
        calib=[Path(p) for p in job.get("calib", [])],
        options=job.get("options", {}),
    )
    res = target.export(req)
    files = list(res.files)
    if not target.embeds_metadata:
        files.append(write_sidecar(out_dir, res.primary, res.meta))
    parity = None
    if job.get("images"):
        runner = target.runner(out_dir / res.primary, res.meta, threads=job.get("threads", 1))
        parity = _parity(runner, state_dict, res.meta, job["images"])
    return {
        "ok": True,
        "primary": str(res.primary),
        "files": [str(f) for f in files],
        "meta": res.meta.to_dict(),
        "tools": res.tools,
        "parity": parity,
    }


if __name__ == "__main__":
    from zoo.isolation import worker_main

    sys.exit(worker_main(sys.argv[1:], run))
