"""`zoo release` and `zoo verify`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.validation.parity import MIN_EVIDENCE, weak_evidence
from zoo.cli.common import (
    EXIT_FAILED,
    JobsOpt,
    ProfileOpt,
    default_jobs,
    profile_run,
    AllowWeakOpt,
    ImagesOpt,
    JsonOpt,
    JunitOpt,
    MinEvidenceOpt,
    RuntimesOpt,
    ThreadsOpt,
    diff_hint,
    evidence_text,
    exit_on_weak_evidence,
    print_json,
    runtimes_option,
    stderr,
)
from zoo.core.errors import ZooError
from zoo.core.manifest import MANIFEST
from zoo.pipeline.junit import artifact_cases, write_junit
from zoo.pipeline.merge import merge as merge_shards
from zoo.api import release_run, verify_raw


def release(
    out: Annotated[Path, typer.Option("--out", help="Release folder.")],
    models: Annotated[Optional[str], typer.Option("--models", help="Model ids (default: all).")] = None,
    targets: Annotated[Optional[str], typer.Option("--targets", help="Targets (default: all).")] = None,
    precisions: Annotated[str, typer.Option("--precisions", help="Precisions.")] = "fp32,fp16,int8",
    jobs: JobsOpt = None,
    profile: ProfileOpt = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Build only slice K of N: K/N.")] = None,
    merge: Annotated[Optional[list[Path]], typer.Option("--merge", help="Join shard folders into --out: --merge A B ... (or repeat --merge).")] = None,
    more: Annotated[Optional[list[Path]], typer.Argument(help="More shard folders for --merge.", show_default=False)] = None,
    images: ImagesOpt = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Calibration images for int8.")] = None,
    threads: ThreadsOpt = 1,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds per conversion (default: per target).")] = None,
    junit: JunitOpt = None,
    min_evidence: MinEvidenceOpt = MIN_EVIDENCE,
    allow_weak_evidence: AllowWeakOpt = False,
    with_withheld: Annotated[bool, typer.Option("--with-withheld", help="Also build the flavours withheld from the default matrix (measured to fail their tier; `zoo list` names them).")] = False,
    json_: JsonOpt = False,
) -> None:
    """Build the whole matrix with parity, model cards, golden kit and REPORT.md; resumable. Flavours
    measured to fail their tier are withheld unless --with-withheld (`zoo list` names them)."""
    progress = None if json_ else stderr
    if more and not merge:
        raise ZooError(f"unexpected argument {str(more[0])!r}: folders are only given with --merge")
    if merge:
        manifest = merge_shards(out, list(merge) + list(more or []), progress=progress)
    else:
        # a thin caller of the API (zoo.api.release_run): it prints what the API returns
        started, rows = time.time(), []
        jobs = jobs or default_jobs()
        _, manifest = release_run(
            out, models or None, targets or None, precisions, jobs=jobs,
            images=images or None,  # default: the pinned photos
            calib=calib or None, shard=shard, threads=threads, timeout=timeout, min_evidence=min_evidence,
            with_withheld=with_withheld, say=stderr, progress=progress, timings=rows if profile else None)
        if profile:
            profile_run(Path(out), jobs, started, rows)
    if junit:
        write_junit(junit, "release", artifact_cases(manifest))
    if json_:
        print_json(manifest.to_dict())
    else:
        ok = sum(1 for a in manifest.artifacts if a.passed)
        typer.echo(f"{ok}/{len(manifest.artifacts)} artifacts passed parity; {len(manifest.failed)} failed; manifest: {Path(out) / MANIFEST}")
        for a in manifest.artifacts:
            if not a.passed:
                typer.echo(f"FAIL  {a.model} {a.target}/{a.precision}/{a.head}: {'; '.join((a.parity or {}).get('failures') or [])}"
                           f"  {evidence_text(a.parity, min_evidence)}")
                hint = diff_hint(Path(out) / a.primary)
                if hint:
                    typer.echo(hint)
            elif weak_evidence(a.parity, min_evidence) or ((a.parity or {}).get("evidence") or {}).get("overlap"):
                typer.echo(f"PASS  {a.model} {a.target}/{a.precision}/{a.head}  {evidence_text(a.parity, min_evidence)}")
        for f in manifest.failed:
            typer.echo(f"FAIL  {f.model} {f.target}/{f.precision}/{f.head}: {f.error}")
        for w in (manifest.release or {}).get("withheld") or []:
            typer.echo(f"withheld: {w['model']} {w['target']}/{w['precision']} (not built; --with-withheld builds it): "
                       f"{w['reason']}; use {w['instead']}")
    bad = [*manifest.failed, *(a for a in manifest.artifacts if not a.passed)]  # build failures and parity FAILs
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        stderr(f"error: {len(bad)} artifact(s) failed: " + ", ".join(f"{a.model} {a.target}/{a.precision}" for a in bad[:5]) + more)
        raise typer.Exit(EXIT_FAILED)
    exit_on_weak_evidence([a.parity for a in manifest.artifacts], min_evidence, allow_weak_evidence)


def verify(
    folder: Annotated[Path, typer.Argument(help="A folder written by `zoo release`.")],
    threads: ThreadsOpt = 1,
    runtime: RuntimesOpt = None,
    junit: JunitOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Re-check every file's sha256 and re-run the golden kit through every artifact."""
    res = verify_raw(folder, threads=threads, progress=None if json_ else stderr, runtime=runtimes_option(runtime) or None)
    report_verify(res, junit, json_)


def report_verify(res: dict, junit: Path | None, json_: bool) -> None:
    """Print a verify result (or its JSON), write its JUnit file, exit 2 when it failed."""
    if junit:
        write_junit(junit, "verify", res["cases"])
    if json_:
        print_json(res)
    else:
        for c in res["cases"]:
            if c.get("runtime") and "runtimes" in res and not c["name"].startswith("file "):
                c = {**c, "name": f"{c['name']} [{c['runtime']}]"}  # several runtimes: each line names its own
            if not c["passed"] or not c["name"].startswith("file "):
                # the evidence the golden kit gave (reported, not judged: verify re-proves a release, see docs/releases.md)
                ev = f"  {evidence_text(c['parity'], judge=False)}" if c.get("parity") else ""
                typer.echo(f"{'PASS' if c['passed'] else 'FAIL'}  {c['name']}" + (f": {c['failure']}" if c["failure"] else "") + ev)
        part = res.get("partial")
        if part:
            typer.echo(f"partial pull ({part['record']}): left out {len(part['left_out'])} artifact(s)"
                       f"{': ' + ', '.join(part['left_out']) if part['left_out'] else ''}; "
                       f"and {len(part['left_out_files'])} other file(s)"
                       f"{': ' + ', '.join(part['left_out_files']) if part['left_out_files'] else ''}")
    if not res["passed"]:
        first = next(c for c in res["cases"] if not c["passed"])
        stderr(f"error: verification failed: {first['failure']}")
        raise typer.Exit(EXIT_FAILED)
