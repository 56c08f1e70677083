"""`zoo export` and `zoo check`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.cli import app
from zoo.cli.common import (
    ArchOpt,
    CheckpointOpt,
    InputSizeOpt,
    JsonOpt,
    LabelsOpt,
    ModelOpt,
    ThreadsOpt,
    print_json,
    resolve_from_options,
    split_list,
)
from zoo.errors import ZooError

#: exit codes (documented in README.md)
EXIT_OK, EXIT_USER, EXIT_FAILED = 0, 1, 2

ImagesOpt = Annotated[Optional[Path], typer.Option("--images", help="Parity images (default: the built-in set).")]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parity_line(a: dict) -> str:
    p = a.get("parity") or {}
    d = p.get("detections", {})
    outs = ", ".join(f"{k} {v['max_abs']:.2g}" for k, v in p.get("outputs", {}).items())
    status = "PASS" if p.get("passed") else "FAIL"
    line = (f"{status}  {a['target']:<7} {a['precision']:<7} {a['head']:<8} "
            f"det {d.get('matched', 0)}/{d.get('reference', 0)} extra {d.get('extra', 0)}  max|diff| {outs}")
    if not p.get("passed"):
        line += "\n      " + "\n      ".join(p.get("failures", []))
    return line


@app.command()
def export(
    to: Annotated[str, typer.Option("--to", help="Targets, comma-separated (see `zoo list`).")],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    arch: ArchOpt = None,
    labels: LabelsOpt = None,
    input_size: InputSizeOpt = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16, int8 (comma-separated).")] = "fp32",
    head: Annotated[Optional[str], typer.Option("--head", help="decoded|raw (default: each target's own).")] = None,
    nms: Annotated[bool, typer.Option("--nms", help="Also an end-to-end ONNX graph with NonMaxSuppression (output: detections).")] = False,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("zoo-export"),
    images: ImagesOpt = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Calibration images for int8 (default: built-in).")] = None,
    threads: ThreadsOpt = 1,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Parallel worker processes.")] = 1,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds per conversion (default: per target).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Export artifacts, prove each against PyTorch, write DIR/manifest.json."""
    from exporters.plan import export_model
    from zoo.images import collect

    targets = split_list(to, "--to")
    precisions = split_list(precision, "--precision")
    img_paths = collect([images], "--images") if images is not None else None
    calib_paths = collect([calib], "--calib") if calib is not None else None
    if calib_paths is not None:
        from zoo.images import read_bgr

        bad = [p for p in calib_paths if read_bgr(p) is None]
        if bad:
            raise ZooError(f"--calib: cannot read {len(bad)} image(s), e.g. {bad[0]}")
    from exporters.plan import make_plan

    make_plan(targets, precisions, head, nms)  # names checked before any weights are read
    rm = resolve_from_options(model, checkpoint, arch, labels, input_size)
    manifest = export_model(
        rm, targets, precisions, out, head=head, images=img_paths, calib=calib_paths,
        threads=threads, jobs=jobs, timeout=timeout, progress=None if json_ else _stderr, nms=nms,
    )
    requested = {(t, p) for t in targets for p in precisions}
    mine = [a for a in manifest["artifacts"] if (a["target"], a["precision"].split("-")[0]) in requested]
    if json_:
        print_json(manifest)
    else:
        for a in mine:
            typer.echo(parity_line(a))
        for f in manifest["failed"]:
            typer.echo(f"FAIL  {f['target']:<7} {f['precision']:<7} {f['head']:<8} {f['error']}")
        typer.echo(f"manifest: {Path(out) / 'manifest.json'}")
    bad = manifest["failed"] or [a for a in mine if not (a.get("parity") or {}).get("passed")]
    if bad:
        names = ", ".join(f"{a['target']}/{a['precision']}" for a in bad)
        _stderr(f"error: {len(bad)} artifact(s) failed: {names}")
        raise typer.Exit(EXIT_FAILED)


def verify_files(folder: Path, manifest: dict) -> list[str]:
    """Every listed file exists with its recorded sha256 and size; problems named by file."""
    from zoo.fsutil import sha256_file

    problems = []
    for a in manifest.get("artifacts", []):
        for f in a.get("files", []):
            p = folder / f["path"]
            if not p.is_file():
                problems.append(f"{f['path']}: missing")
            elif p.stat().st_size != f["bytes"] or sha256_file(p) != f["sha256"]:
                problems.append(f"{f['path']}: sha256 mismatch (file changed since export)")
    return problems


def find_checkpoint(sha: str, explicit: Path | None) -> Path:
    from checkpoints import loader

    if explicit is not None:
        got = loader.sha256_file(explicit)
        if got != sha:
            raise ZooError(f"--checkpoint {explicit} has sha256 {got}, the artifacts were exported from {sha}")
        return explicit
    for entry in loader.manifest().values():
        if entry.sha256 == sha:
            return loader.resolve(entry)
    raise ZooError(f"the artifacts were exported from checkpoint sha256 {sha[:12]}…, not a published one: pass --checkpoint PATH")


@app.command()
def check(
    folder: Annotated[Path, typer.Argument(help="A folder written by `zoo export`.")],
    images: ImagesOpt = None,
    checkpoint: CheckpointOpt = None,
    threads: ThreadsOpt = 1,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write a JUnit XML report here (for CI).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Re-verify every file's sha256, then re-run parity of every artifact against PyTorch."""
    from exporters import get_target
    from exporters.plan import read_manifest, run_worker
    from zoo.images import builtin_images, collect

    manifest = read_manifest(folder)
    img_paths = collect([images], "--images") if images is not None else builtin_images()
    problems = verify_files(folder, manifest)
    ckpt = find_checkpoint(manifest["model"]["checkpoint_sha256"], checkpoint)
    results = []
    import tempfile

    with tempfile.TemporaryDirectory(prefix="zoo-check-") as td:
        for a in manifest.get("artifacts", []):
            name = f"{a['target']}/{a['precision']}/{a['head']}"
            if any(pr.startswith(tuple(f["path"] + ":" for f in a["files"])) for pr in problems):
                results.append({"artifact": name, "primary": a["primary"], "passed": False,
                                "failures": [pr for pr in problems if pr.split(":")[0] in {f["path"] for f in a["files"]}]})
                continue
            job = {"kind": "check", "target": a["target"], "meta": a["meta"], "primary": str(Path(folder) / a["primary"]),
                   "checkpoint": str(Path(ckpt).resolve()), "checkpoint_sha256": manifest["model"]["checkpoint_sha256"],
                   "images": [str(p) for p in img_paths], "threads": threads}
            res = run_worker(job, Path(td), get_target(a["target"]).timeout, name.replace("/", "-"))
            if not res.get("ok"):
                results.append({"artifact": name, "primary": a["primary"], "passed": False, "failures": [res.get("error")]})
                continue
            p = res["parity"]
            results.append({"artifact": name, "primary": a["primary"], "passed": p["passed"], "failures": p["failures"], "parity": p})
    passed = all(r["passed"] for r in results) and not problems
    if junit:
        from zoo.junit import write_junit

        cases = [{"name": r["artifact"], "passed": r["passed"], "failure": "; ".join(f for f in r["failures"] if f) or None} for r in results]
        cases += [{"name": f"file {p.split(':')[0]}", "passed": False, "failure": p} for p in problems]
        write_junit(junit, "check", cases)
    if json_:
        print_json({"folder": str(folder), "passed": passed, "file_problems": problems, "results": results})
    else:
        for r in results:
            d = (r.get("parity") or {}).get("detections", {})
            outs = ", ".join(f"{k} {v['max_abs']:.2g}" for k, v in (r.get("parity") or {}).get("outputs", {}).items())
            typer.echo(f"{'PASS' if r['passed'] else 'FAIL'}  {r['artifact']:<22} det {d.get('matched', 0)}/{d.get('reference', 0)} "
                       f"extra {d.get('extra', 0)}  max|diff| {outs}")
            for f in r["failures"]:
                typer.echo(f"      {f}")
    if not passed:
        failing = [r for r in results if not r["passed"]]
        first = failing[0] if failing else None
        msg = f"{first['primary']}: {first['failures'][0]}" if first and first["failures"] else "; ".join(problems)
        _stderr(f"error: {len(failing)} artifact(s) failed parity or verification; first: {msg}")
        raise typer.Exit(EXIT_FAILED)
