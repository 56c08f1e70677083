"""`zoo verify`: every file's sha256, then the golden kit through every artifact in its own runtime.

A release whose manifest lists failed artifacts (``failed``) does not verify: each is a failing case
naming it. ``zoo verify`` proves a release whole, and a release missing some of what it was asked for
is not whole.

A folder written by `zoo pull --target/--precision` holds only part of its release: its ``pull.json``
(outside the manifest) lists the files left out. Those, when absent, are reported as left out instead of
failing; every other file the manifest lists must be there, so without that record (an ordinary release,
or a pull whose record was removed) a missing file still fails.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from zoo.exporters import get_target, select_runtime
from zoo.core.errors import ZooError
from zoo.core.manifest import Manifest, file_problem, read_manifest, verify_files
from zoo.pipeline.golden import GOLDEN, image_rels, reference_dir
from zoo.pipeline.worker import run_worker


PULL_RECORD = "pull.json"


def pull_record_text(source: str, digest: str, targets: list[str] | None, precisions: list[str] | None,
                     left_out: list[str]) -> str:
    """What `zoo pull` records beside the manifest: where the folder came from and what it left out
    (no time: a pull of the same digest writes the same bytes)."""
    return json.dumps({"source": source, "digest": digest, "targets": targets, "precisions": precisions,
                       "left_out": sorted(left_out)}, indent=2) + "\n"


def left_out_paths(folder: Path, m: Manifest) -> set[str]:
    """The manifest paths the folder's pull record says were left out (empty without a record).
    The record is input: it must be an object whose 'left_out' lists paths of this manifest."""
    path = Path(folder) / PULL_RECORD
    if not path.is_file():
        return set()
    try:
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooError(f"{path}: unreadable or not JSON ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    left = rec.get("left_out") if isinstance(rec, dict) else None
    if not isinstance(left, list) or not all(isinstance(p, str) for p in left):
        raise ZooError(f"{path}: 'left_out' must be a list of paths")
    known = {f.path for f in m.all_files()}
    unknown = [p for p in left if p not in known]
    if unknown:
        raise ZooError(f"{path}: leaves out {unknown[0]!r}, which the manifest does not list; the record is damaged")
    return set(left)


def verify(folder: Path, threads: int = 1, progress=None, runtime: str | None = None) -> dict:
    say = progress or (lambda msg: None)
    folder = Path(folder)
    m = read_manifest(folder)
    if not m.is_release:
        raise ZooError(f"{folder} is not a `zoo release` folder; for `zoo export` folders use `zoo check`")
    # a partial pull: files its record leaves out and that are indeed absent are not checked
    left = {p for p in left_out_paths(folder, m) if not os.path.lexists(folder / p)}
    skipped = [a for a in m.artifacts if a.files and all(f.path in left for f in a.files)]
    skipped_keys = {a.key for a in skipped}
    cases: list[dict] = []
    # an artifact the release could not build is a failure of the release, whatever the files say
    for f in m.failed:
        cases.append({"name": str(f.key), "passed": False,
                      "failure": f"{f.key} failed when the release was built: {f.error or 'no reason recorded'}"})
    bad_files = set()
    for f in m.files:
        if f.path in left:
            continue
        problem = file_problem(folder, f)
        if problem:
            bad_files.add(f.path)
        cases.append({"name": f"file {f.path}", "passed": not problem, "failure": problem})
    imgs = [str(folder / p) for p in image_rels([f.path for f in m.files])]
    arts, left_out = select_runtime([a for a in m.artifacts if a.key not in skipped_keys], runtime)
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
    if left:
        out["partial"] = {"record": PULL_RECORD, "left_out": [str(a.key) for a in skipped],
                          "left_out_files": sorted(f.path for f in m.files if f.path in left)}
    return out
