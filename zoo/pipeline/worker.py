"""The isolated worker: one export, one parity check, one golden-kit run or one probe per process.

    python -m zoo.pipeline.worker JOB.json RESULT.json

A converter that crashes, hangs or prints megabytes of logs only takes this
process down; the parent (`run_worker`) reads RESULT.json (absent = crash) and moves on.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from checkpoints.loader import load_state_dict
from exporters import get_target
from exporters.base import ExportRequest, write_sidecar
from validation.parity import MIN_EVIDENCE, ParityInput, compare
from zoo.core.images import image_records, load_batch
from zoo.core.integrity import output_problem
from zoo.core.isolation import run_isolated, worker_main
from zoo.core.manifest import base_precision
from zoo.core.meta import ArtifactMeta
from zoo.core.runtime import TorchRunner


def run_worker(job: dict, work: Path, timeout: float, name: str) -> dict:
    """One job in its own interpreter; a crash or hang becomes an error result
    ("converter crashed ..." for an export, "runtime crashed ..." for the others)."""
    what = "converter" if job.get("kind", "export") == "export" else "runtime"
    return run_isolated("zoo.pipeline.worker", [], job, work, timeout, name, what=what)


def _inputs(images: list[str], meta: ArtifactMeta) -> tuple[np.ndarray, ParityInput]:
    x, names, sizes = load_batch([Path(p) for p in images], *meta.input_size)
    return x, ParityInput(x, [Path(n).name for n in names], sizes, [r["sha256"] for r in image_records(names)])


def _evidence_args(job: dict, calibration: list[dict] | None) -> dict:
    """compare()'s evidence arguments: the job's --min-evidence, and for int8 the calibration set by sha256."""
    int8 = base_precision(job["meta"]["precision"]) == "int8"
    return {"min_evidence": job.get("min_evidence", MIN_EVIDENCE), "calibration": calibration if int8 else None}


def _parity(runner, state_dict, meta: ArtifactMeta, images: list[str], evidence: dict) -> dict:
    x, data = _inputs(images, meta)
    ref_head = "decoded" if meta.head == "nms" else meta.head
    with TorchRunner(meta.with_(target="pytorch", precision="fp32", head=ref_head), state_dict) as ref_runner:
        ref = ref_runner.infer(x)
    with runner:
        got = runner.infer(x)
    return compare(ref, got, data, meta.labels, meta.prior_count, meta.precision, **evidence)


def _golden(runner, meta: ArtifactMeta, job: dict) -> dict:
    """Run the golden images through the artifact and compare with the stored PyTorch outputs."""
    ref = {p.stem: np.load(p) for p in sorted(Path(job["reference_dir"]).glob("*.npy"))}
    x, data = _inputs(job["images"], meta)
    with runner:
        got = runner.infer(x)
    return compare(ref, got, data, meta.labels, meta.prior_count, meta.precision, **_evidence_args(job, None))


def _probe(runner, meta: ArtifactMeta, check_head: bool) -> dict:
    """Load the artifact, run one inference on zeros and check the outputs: finite, no absurd box
    (weights that do not fit), and with ``check_head`` of the head the metadata declares (a sidecar
    that disagrees with its file is refused)."""
    w, h = meta.input_size
    with runner:
        out = runner.infer(np.zeros((1, 3, h, w), np.float32))
    problem = output_problem(out, meta, check_head=check_head)
    if problem is None:
        return {"ok": True}
    kind, what = problem
    return {"ok": False, "error": what, "problem": kind}


def _sensitivity(job: dict) -> dict:
    """The model-level int8 sensitivity analysis on the calibration images (zoo.core.model.sensitivity)."""
    from zoo.core.model import sensitivity  # heavy (torch): only this job needs it

    meta = ArtifactMeta.from_dict(job["meta"])
    state_dict = load_state_dict(Path(job["checkpoint"]), job["checkpoint_sha256"])
    # the analysis runs alone, before the int8 conversions start: every core is its own
    cores = max(job.get("threads", 1), os.cpu_count() or 1)
    with TorchRunner(meta.with_(target="pytorch", precision="fp32", head="raw"), state_dict, threads=cores) as ref:
        model = ref.net
    x, _, _ = load_batch([Path(p) for p in job["calib"]], *meta.input_size)
    analysis = sensitivity.analyse(model, x)
    analysis["float_kept"] = sensitivity.choose(analysis)
    params = {l["module"]: l["params"] for l in analysis["layers"]}
    # the price: a float weight takes 4 bytes where int8 takes 1
    analysis["float_kept_extra_bytes"] = {n: 3 * params[n] for n in analysis["float_kept"]}
    analysis["rule"] = {"keep_ratio": sensitivity.KEEP_RATIO, "max_float_params": sensitivity.MAX_FLOAT_PARAMS}
    return {"ok": True, "sensitivity": analysis}


def _reference(job: dict) -> dict:
    """PyTorch's raw-head outputs on the images, saved as .npy in ``out_dir`` (`zoo compat` on an export folder)."""
    meta = ArtifactMeta.from_dict(job["meta"])
    state_dict = load_state_dict(Path(job["checkpoint"]), job["checkpoint_sha256"])
    x, _, _ = load_batch([Path(p) for p in job["images"]], *meta.input_size)
    with TorchRunner(meta.with_(target="pytorch", precision="fp32", head="raw"), state_dict) as ref:
        out = ref.infer(x)
    saved = {}
    for name in ("scores", "boxes", "locations"):
        path = Path(job["out_dir"]) / f"{name}.npy"
        np.save(path, out[name].astype(np.float32))
        saved[name] = str(path)
    return {"ok": True, "outputs": saved}


def run(job: dict) -> dict:
    if job["kind"] == "sensitivity":
        return _sensitivity(job)
    if job["kind"] == "reference":
        return _reference(job)
    target = get_target(job["target"])
    target.require()
    meta = ArtifactMeta.from_dict(job["meta"])
    threads, runtime = job.get("threads", 1), job.get("runtime")
    if job["kind"] == "probe":
        runner = target.runner(Path(job["primary"]), meta, threads=threads, runtime=runtime)
        return _probe(runner, meta, bool(job.get("check_head", True)))
    if job["kind"] == "golden":
        runner = target.runner(Path(job["primary"]), meta, threads=threads, runtime=runtime)
        return {"ok": True, "parity": _golden(runner, meta, job)}
    state_dict = load_state_dict(Path(job["checkpoint"]), job["checkpoint_sha256"])
    if job["kind"] == "check":
        runner = target.runner(Path(job["primary"]), meta, threads=threads, runtime=runtime)
        # the calibration recorded in the manifest, compared with these parity images
        evidence = _evidence_args(job, job.get("calibration"))
        return {"ok": True, "parity": _parity(runner, state_dict, meta, job["images"], evidence)}
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
        sensitivity=job.get("sensitivity") or {},
    )
    res = target.export(req)
    files = list(res.files)
    if not target.embeds_metadata:
        files.append(write_sidecar(out_dir, res.primary, res.meta, res.files))
    parity = None
    if job.get("images"):
        runner = target.runner(out_dir / res.primary, res.meta, threads=threads)
        calib = image_records(job.get("calib", [])) if base_precision(res.meta.precision) == "int8" else None
        parity = _parity(runner, state_dict, res.meta, job["images"], _evidence_args(job, calib))
    return {
        "ok": True,
        "primary": str(res.primary),
        "files": [str(f) for f in files],
        "meta": res.meta.to_dict(),
        "tools": res.tools,
        "parity": parity,
    }


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:], run))
