"""`zoo check`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo.validation.parity import MIN_EVIDENCE
from zoo.cli.common import (
    EXIT_FAILED,
    AllowWeakOpt,
    CheckpointOpt,
    ImagesOpt,
    JsonOpt,
    JunitOpt,
    MinEvidenceOpt,
    RuntimeOpt,
    ThreadsOpt,
    detection_text,
    diff_hint,
    dynamic_text,
    evidence_text,
    exit_on_weak_evidence,
    parity_images,
    print_json,
    runtime_option,
    stderr,
)
from zoo.core.manifest import read_manifest
from zoo.pipeline.check import check as run_check
from zoo.pipeline.junit import write_junit


def check(
    folder: Annotated[Path, typer.Argument(help="A folder written by `zoo export`.")],
    images: ImagesOpt = None,
    checkpoint: CheckpointOpt = None,
    threads: ThreadsOpt = 1,
    runtime: RuntimeOpt = None,
    junit: JunitOpt = None,
    min_evidence: MinEvidenceOpt = MIN_EVIDENCE,
    allow_weak_evidence: AllowWeakOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Re-verify every file's sha256, then re-run parity of every artifact against PyTorch."""
    runtime = runtime_option(runtime)
    if images is not None:
        img_paths = parity_images(images)
    else:
        read_manifest(folder)  # a folder that is not an export is refused before the photos are looked for
        img_paths = parity_images(None)
    res = run_check(folder, img_paths, checkpoint, threads=threads, runtime=runtime, min_evidence=min_evidence)
    results, problems = res["results"], res["file_problems"]
    if junit:
        cases = [{"name": r["artifact"], "passed": r["passed"], "failure": "; ".join(f for f in r["failures"] if f) or None} for r in results]
        cases += [{"name": f"file {p.split(':')[0]}", "passed": False, "failure": p} for p in problems]
        write_junit(junit, "check", cases)
    if json_:
        print_json(res)
    else:
        if runtime is not None:
            typer.echo(f"runtime {runtime}: {len(results)} artifact(s); left out (their target has no {runtime} runtime): "
                       f"{', '.join(res['left_out']) or 'none'}")
        for r in results:
            outs = ", ".join(f"{k} {v['max_abs']:.2g}" for k, v in (r.get("parity") or {}).get("outputs", {}).items())
            line = f"{'PASS' if r['passed'] else 'FAIL'}  {r['artifact']:<22} {detection_text(r.get('parity'))}  max|diff| {outs}"
            if r.get("parity"):
                line += f"  {evidence_text(r['parity'], min_evidence)}{dynamic_text(r['parity'])}"
            typer.echo(line)
            for f in r["failures"] + ([r["parity"]["advice"]] if (r.get("parity") or {}).get("advice") else []):
                typer.echo(f"      {f}")
            hint = "" if r["passed"] else diff_hint(Path(res["folder"]) / r["primary"], runtime)
            if hint:
                typer.echo(hint)
    if not res["passed"]:
        failing = [r for r in results if not r["passed"]]
        first = failing[0] if failing else None
        msg = f"{first['primary']}: {first['failures'][0]}" if first and first["failures"] else "; ".join(problems)
        stderr(f"error: {len(failing)} artifact(s) failed parity or verification; first: {msg}")
        raise typer.Exit(EXIT_FAILED)
    exit_on_weak_evidence([r.get("parity") for r in results], min_evidence, allow_weak_evidence)
