"""`zoo check`: re-verify every file of an export folder, then re-run parity of every artifact against PyTorch.

The evidence of each new verdict is recorded like an export's; for an int8 artifact the parity images
are compared (by sha256) with the calibration images its manifest entry recorded, and the overlap reported."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from zoo.checkpoints.resolve import find_checkpoint
from zoo.exporters import get_target, select_runtime
from zoo.validation.parity import MIN_EVIDENCE, shift_applies, weak_evidence
from zoo.core.errors import ZooError
from zoo.core.manifest import MANIFEST, file_problem, read_manifest
from zoo.pipeline.reference import TIMEOUT as REFERENCE_TIMEOUT, reference_job, shift_head
from zoo.pipeline.worker import run_worker, warm_workers


def recorded_calibration(parity: dict | None, where: str) -> list[dict] | None:
    """The calibration set an artifact's manifest entry recorded (``[{"name", "sha256"}]``), None when absent
    (not int8, or an older manifest); a malformed record is refused naming the artifact."""
    ev = (parity or {}).get("evidence") if isinstance(parity, dict) else None
    calib = ev.get("calibration") if isinstance(ev, dict) else None
    if calib is None:
        return None
    if not isinstance(calib, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("sha256"), str) for c in calib
    ):
        raise ZooError(f"{MANIFEST}: artifact {where}: parity.evidence.calibration must be a list of "
                       "{\"name\", \"sha256\"} entries; the manifest is damaged")
    return [{"name": c["name"], "sha256": c["sha256"]} for c in calib]


def _facts(meta) -> str:
    """What the PyTorch reference of an artifact depends on besides checkpoint, head and images."""
    if not isinstance(meta, dict):
        return "?"
    return json.dumps({k: meta.get(k) for k in ("arch", "input_size", "labels", "num_classes")}, sort_keys=True, default=str)


def check(folder: Path, images: list[Path], checkpoint: Path | None = None, threads: int = 1,
          runtime: str | None = None, progress=None, min_evidence: int = MIN_EVIDENCE) -> dict:
    say = progress or (lambda msg: None)
    folder = Path(folder)
    manifest = read_manifest(folder)
    root = folder if folder.is_dir() else folder.parent
    arts, left_out = select_runtime(manifest.artifacts, runtime)
    problems_by_file = {f.path: pr for a in arts for f in a.files if (pr := file_problem(root, f))}
    calibration = {a.key: recorded_calibration(a.parity, a.key.label()) for a in arts}  # refused now, before any work
    sha = (manifest.model or {}).get("checkpoint_sha256", "")
    ckpt = find_checkpoint(sha, checkpoint)
    results = []
    imgs = [str(p) for p in images]
    with tempfile.TemporaryDirectory(prefix="zoo-check-") as td, warm_workers() as warm:
        # the PyTorch reference once per model facts and head (cached across runs), not once per artifact
        refs: dict[str, dict] = {}
        for a in arts:
            facts = _facts(a.meta)
            head = "decoded" if a.head == "nms" else a.head
            heads = [head] + ([shift_head(head)] if shift_applies(a.precision, a.head) else [])
            heads = [h for h in heads if h not in refs.setdefault(facts, {})]
            if not heads or not imgs:
                continue
            try:
                got, job = reference_job(str(Path(ckpt).resolve()), sha, a.meta, heads, imgs, threads)
            except (ZooError, KeyError, TypeError, ValueError, AttributeError):
                continue  # metadata this cannot read: that artifact's own check says what is wrong
            if job is not None:
                say(f"PyTorch reference ({', '.join(heads)}) ...")
                run_worker(job, Path(td), REFERENCE_TIMEOUT, "reference")  # failed: each check computes its own
            refs[facts].update(got)
        for a in arts:
            name = a.key.label()
            bad = [problems_by_file[f.path] for f in a.files if f.path in problems_by_file]
            if bad:
                results.append({"artifact": name, "primary": a.primary, "passed": False, "failures": bad})
                continue
            say(f"checking {name} ...")
            job = {"kind": "check", "target": a.target, "meta": a.meta, "primary": str(root / a.primary),
                   "checkpoint": str(Path(ckpt).resolve()), "checkpoint_sha256": sha,
                   "images": [str(p) for p in images], "threads": threads, "runtime": runtime,
                   "min_evidence": min_evidence, "calibration": calibration[a.key],
                   "reference": refs.get(_facts(a.meta))}
            res = run_worker(job, Path(td), get_target(a.target).timeout, name.replace("/", "-"), warm=warm)
            if not res.get("ok"):
                results.append({"artifact": name, "primary": a.primary, "passed": False, "failures": [res.get("error")]})
                continue
            p = res["parity"]
            results.append({"artifact": name, "primary": a.primary, "passed": p["passed"], "failures": p["failures"], "parity": p,
                            "weak_evidence": weak_evidence(p, min_evidence)})
    problems = list(problems_by_file.values())
    passed = all(r["passed"] for r in results) and not problems
    out = {"folder": str(folder), "passed": passed, "file_problems": problems, "results": results, "min_evidence": min_evidence}
    if runtime is not None:
        out["runtime"] = runtime
        out["left_out"] = [a.key.label() for a in left_out]
    return out
