"""`zoo publish` and `zoo pull`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.cli.common import EXIT_FAILED, JsonOpt, print_json, split_list, stderr
from zoo.cli.release import report_verify
from zoo.pipeline.oci import BlobMismatch, parse_reference
from zoo.pipeline.publish import describe, package, preflight
from zoo.pipeline.publish import publish as run_publish
from zoo.pipeline.publish import pull as run_pull
from zoo.pipeline.verify import verify as run_verify

InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="Plain HTTP, no TLS (a registry on loopback or a trusted network).")]


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n} B"


def publish(
    folder: Annotated[Path, typer.Argument(help="A folder written by `zoo release` (it must pass `zoo verify`).")],
    to: Annotated[str, typer.Option("--to", help="oci://HOST[:PORT]/REPO:TAG")],
    insecure: InsecureOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Move the tag even if it points at another digest.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Verify and print what would be pushed; contact no registry.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Push a verified release as one OCI artifact: manifest.json and the files it lists, nothing else.

    Credentials: ZOO_REGISTRY_USER/ZOO_REGISTRY_PASSWORD, else the Docker config ($DOCKER_CONFIG or
    ~/.docker/config.json, `auths`)."""
    ref = parse_reference(to, "--to")
    pkg = package(folder)  # refuses a non-release, a partial pull, a hostile path, before any work
    if not dry_run:
        preflight(pkg, ref, insecure, force)  # unreachable, refused, tag taken: said before verifying
    t0 = time.monotonic()
    res = run_verify(folder, progress=None if json_ else stderr)
    verify_s = round(time.monotonic() - t0, 3)
    if not res["passed"]:
        first = next(c for c in res["cases"] if not c["passed"])
        stderr(f"error: {folder} does not verify ({first['failure']}); nothing was published")
        raise typer.Exit(EXIT_FAILED)
    if dry_run:
        out = describe(pkg, ref)
        out["dry_run"] = True
    else:
        out = run_publish(pkg, ref, insecure, force, progress=None if json_ else stderr)
        out["dry_run"] = False
    out["verify_seconds"] = verify_s
    if json_:
        print_json(out)
        return
    for x in out["layers"]:
        typer.echo(f"{x['size']:>10}  {x['mediaType']:<42} {x['title']}")
    head = "would push" if dry_run else "pushed"
    typer.echo(f"{head} {len(out['layers'])} layers, {_size(out['total_bytes'])} to {out['ref']}")
    if not dry_run:
        typer.echo(f"sent {out['blobs_pushed']} blob(s), {_size(out['bytes_sent'])}; {out['blobs_present']} already there; "
                   f"{out['push_seconds']:.2f} s" + ("" if out["previous_digest"] in (None, out["digest"])
                                                    else f"; the tag moved from {out['previous_digest']}"))
    typer.echo(f"digest {out['digest']}")


def pull(
    ref: Annotated[str, typer.Argument(help="oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:DIGEST")],
    out: Annotated[Path, typer.Option("--out", help="A new (or empty) folder.")],
    target: Annotated[Optional[str], typer.Option("--target", help="Only these targets (comma-separated), plus the manifest and golden kit.")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="Only these precisions (comma-separated).")] = None,
    insecure: InsecureOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Fetch a published release (or the part an app needs), check every blob, then `zoo verify` it."""
    targets = split_list(target, "--target") if target is not None else None
    precisions = split_list(precision, "--precision") if precision is not None else None
    try:
        res = run_pull(ref, out, insecure, targets, precisions, progress=None if json_ else stderr)
    except BlobMismatch as e:
        stderr(f"error: {e}")
        raise typer.Exit(EXIT_FAILED) from None
    t0 = time.monotonic()
    vres = run_verify(out, progress=None if json_ else stderr)
    res["verify_seconds"] = round(time.monotonic() - t0, 3)
    if json_:
        print_json({"pull": res, "verify": vres})
        if not vres["passed"]:
            raise typer.Exit(EXIT_FAILED)
        return
    typer.echo(f"pulled {len(res['files'])} file(s), {_size(res['bytes'])} from {res['ref']} ({res['digest']}) "
               f"into {res['out']} in {res['pull_seconds']:.2f} s" + (f"; left out {len(res['left_out'])} file(s)" if res["left_out"] else ""))
    report_verify(vres, None, False)
