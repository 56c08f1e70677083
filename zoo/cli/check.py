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
    RuntimesOpt,
    StderrWarnings,
    ThreadsOpt,
    detection_text,
    diff_hint,
    dynamic_text,
    evidence_text,
    exit_on_weak_evidence,
    print_json,
    runtimes_option,
    stderr,
)
from zoo.api import check_raw
from zoo.pipeline.junit import write_junit


def check(
    folder: Annotated[Path, typer.Argument(help="A folder written by `zoo export`.")],
    images: ImagesOpt = None,
    checkpoint: CheckpointOpt = None,
    threads: ThreadsOpt = 1,
    runtime: RuntimesOpt = None,
    junit: JunitOpt = None,
    min_evidence: MinEvidenceOpt = MIN_EVIDENCE,
    allow_weak_evidence: AllowWeakOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Re-verify every file's sha256, then re-run parity of every artifact against PyTorch."""
    runtimes = runtimes_option(runtime)
    res = check_raw(folder, images, checkpoint, threads=threads, runtime=runtimes or None, min_evidence=min_evidence,
                    warnings=StderrWarnings())
    results, problems = res["results"], res["file_problems"]
    if junit:
        cases = [{"name": r["artifact"] + (f" [{r['runtime']}]" if len(runtimes) > 1 else ""), "passed": r["passed"], "failure": "; ".join(f for f in r["failures"] if f) or None} for r in results]
        cases += [{"name": f"file {p.split(':')[0]}", "passed": False, "failure": p} for p in problems]
        write_junit(junit, "check", cases)
    if json_:
        print_json(res)
    else:
        for rt in runtimes or [None]:
            mine = [r for r in results if r.get("runtime", res.get("runtime")) == rt]
            if rt is not None:  # a runtime's line, then its results
                left = res["left_out"][rt] if isinstance(res["left_out"], dict) else res["left_out"]
                typer.echo(f"runtime {rt}: {len(mine)} artifact(s); left out (their target has no {rt} runtime): "
                           + ("all" if left is None else ", ".join(left) or "none"))
            for r in mine:
                outs = ", ".join(f"{k} {v['max_abs']:.2g}" for k, v in (r.get("parity") or {}).get("outputs", {}).items())
                line = f"{'PASS' if r['passed'] else 'FAIL'}  {r['artifact']:<22} {detection_text(r.get('parity'))}  max|diff| {outs}"
                if r.get("parity"):
                    line += f"  {evidence_text(r['parity'], min_evidence)}{dynamic_text(r['parity'])}"
                typer.echo(line)
                for f in r["failures"] + ([r["parity"]["advice"]] if (r.get("parity") or {}).get("advice") else []):
                    typer.echo(f"      {f}")
                hint = "" if r["passed"] else diff_hint(Path(res["folder"]) / r["primary"], rt)
                if hint:
                    typer.echo(hint)
    if not res["passed"]:
        failing = [r for r in results if not r["passed"]]
        first = failing[0] if failing else None
        msg = f"{first['primary']}: {first['failures'][0]}" if first and first["failures"] else "; ".join(problems)
        stderr(f"error: {len(failing)} artifact(s) failed parity or verification; first: {msg}")
        raise typer.Exit(EXIT_FAILED)
    exit_on_weak_evidence([r.get("parity") for r in results], min_evidence, allow_weak_evidence)

