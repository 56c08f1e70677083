"""`zoo check`: re-verify every file of an export folder, then re-run parity of every artifact against PyTorch."""
from __future__ import annotations

import tempfile
from pathlib import Path

from checkpoints.resolve import find_checkpoint
from exporters import get_target, select_runtime
from zoo.core.manifest import file_problem, read_manifest
from zoo.pipeline.worker import run_worker


def check(folder: Path, images: list[Path], checkpoint: Path | None = None, threads: int = 1,
          runtime: str | None = None, progress=None) -> dict:
    say = progress or (lambda msg: None)
    folder = Path(folder)
    manifest = read_manifest(folder)
    root = folder if folder.is_dir() else folder.parent
    arts, left_out = select_runtime(manifest.artifacts, runtime)
    problems_by_file = {f.path: pr for a in arts for f in a.files if (pr := file_problem(root, f))}
    sha = (manifest.model or {}).get("checkpoint_sha256", "")
    ckpt = find_checkpoint(sha, checkpoint)
    results = []
    with tempfile.TemporaryDirectory(prefix="zoo-check-") as td:
        for a in arts:
            name = a.key.label()
            bad = [problems_by_file[f.path] for f in a.files if f.path in problems_by_file]
            if bad:
                results.append({"artifact": name, "primary": a.primary, "passed": False, "failures": bad})
                continue
            say(f"checking {name} ...")
            job = {"kind": "check", "target": a.target, "meta": a.meta, "primary": str(root / a.primary),
                   "checkpoint": str(Path(ckpt).resolve()), "checkpoint_sha256": sha,
                   "images": [str(p) for p in images], "threads": threads, "runtime": runtime}
            res = run_worker(job, Path(td), get_target(a.target).timeout, name.replace("/", "-"))
            if not res.get("ok"):
                results.append({"artifact": name, "primary": a.primary, "passed": False, "failures": [res.get("error")]})
                continue
            p = res["parity"]
            results.append({"artifact": name, "primary": a.primary, "passed": p["passed"], "failures": p["failures"], "parity": p})
    problems = list(problems_by_file.values())
    passed = all(r["passed"] for r in results) and not problems
    out = {"folder": str(folder), "passed": passed, "file_problems": problems, "results": results}
    if runtime is not None:
        out["runtime"] = runtime
        out["left_out"] = [a.key.label() for a in left_out]
    return out
