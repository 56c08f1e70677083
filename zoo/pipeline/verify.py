"""`zoo verify`: every file's sha256, then the golden kit through every artifact in its own runtime."""
from __future__ import annotations

import tempfile
from pathlib import Path

from exporters import get_target, select_runtime
from zoo.core.errors import ZooError
from zoo.core.manifest import file_problem, read_manifest, verify_files
from zoo.pipeline.golden import GOLDEN, image_rels, reference_dir
from zoo.pipeline.worker import run_worker


def verify(folder: Path, threads: int = 1, progress=None, runtime: str | None = None) -> dict:
    say = progress or (lambda msg: None)
    folder = Path(folder)
    m = read_manifest(folder)
    if not m.is_release:
        raise ZooError(f"{folder} is not a `zoo release` folder; for `zoo export` folders use `zoo check`")
    cases: list[dict] = []
    bad_files = set()
    for f in m.files:
        problem = file_problem(folder, f)
        if problem:
            bad_files.add(f.path)
        cases.append({"name": f"file {f.path}", "passed": not problem, "failure": problem})
    imgs = [str(folder / p) for p in image_rels([f.path for f in m.files])]
    arts, left_out = select_runtime(m.artifacts, runtime)
    with tempfile.TemporaryDirectory(prefix="zoo-verify-") as td:
        for a in arts:
            name = str(a.key)
            broken = verify_files(folder, a.files)
            if broken:
                cases.append({"name": name, "passed": False, "failure": f"{broken[0]} (changed since release)"})
                continue
            if any(b.startswith(f"{GOLDEN}/{a.model}/") for b in bad_files):
                cases.append({"name": name, "passed": False, "failure": f"golden kit of {a.model} is corrupt"})
                continue
            target = get_target(a.target)
            say(f"verifying {name} ...")
            job = {"kind": "golden", "target": a.target, "meta": a.meta, "primary": str(folder / a.primary),
                   "reference_dir": str(reference_dir(folder, a.model)), "images": imgs, "threads": threads, "runtime": runtime}
            res = run_worker(job, Path(td), target.timeout, name.replace(" ", "-").replace("/", "-"))
            if not res.get("ok"):
                cases.append({"name": name, "passed": False, "failure": f"{a.primary}: {res.get('error')}"})
                continue
            p = res["parity"]
            cases.append({"name": name, "passed": p["passed"],
                          "failure": None if p["passed"] else f"{a.primary}: {p['failures'][0]}", "parity": p})
    passed = all(c["passed"] for c in cases)
    out = {"folder": str(folder), "passed": passed, "cases": cases}
    if runtime is not None:
        out["runtime"] = runtime
        out["left_out"] = [str(a.key) for a in left_out]
    return out
