"""`zoo compat`: artifacts x runtime releases, each release in its own cached environment."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.exporters import runtime_names
from zoo.validation.compat import render_text
from zoo.validation.parity import MIN_EVIDENCE
from zoo.cli.common import CheckpointOpt, ImagesOpt, JsonOpt, JunitOpt, ThreadsOpt, parity_images, print_json, stderr
from zoo.core.errors import ZooError
from zoo.pipeline.compat import collect, run_compat, save_compat, select_specs
from zoo.pipeline.compat_env import compat_dir, dir_bytes, load_matrix, parse_runtime_specs, prepare_env, prune_envs
from zoo.pipeline.junit import write_junit


def compat(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Release or export folders, or artifact files.")] = None,
    runtime: Annotated[Optional[str], typer.Option(
        "--runtime", help="Runtime releases NAME==VERSION[,...], e.g. onnxruntime==1.17.3,mnn==3.0.0 "
                          "(tflite-runtime==2.14.0 for LiteRT's older line).")] = None,
    matrix: Annotated[Optional[str], typer.Option(
        "--matrix", help="A named matrix of zoo/core/data/compat_matrix.toml: default (the default when no --runtime).")] = None,
    prepare: Annotated[bool, typer.Option(
        "--prepare", help="Only create the environments (of the artifacts' runtimes, or of every runtime without paths).")] = False,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Only remove cached environments no release of the matrix file (or of --runtime) names.")] = False,
    images: ImagesOpt = None,
    checkpoint: CheckpointOpt = None,
    threads: ThreadsOpt = 1,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per artifact run.")] = 300.0,
    save: Annotated[bool, typer.Option("--save/--no-save", help="Write DIR/compat.json beside each manifest.")] = True,
    junit: JunitOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run each artifact's golden kit (or the parity images) in each requested runtime release.

    Environments are cached in $ZOO_COMPAT_DIR (default: the user cache's compat/); a missing one is
    created first (pip install of the runtime and NumPy only), and that is said on stderr.
    """
    cache = compat_dir()
    # what gets installed is always said (stderr); with --json the progress lines are not
    say = (lambda msg: stderr(msg) if msg.startswith(("creat", "note")) else None) if json_ else stderr
    m = load_matrix()
    if prune:
        if paths or prepare or matrix:
            raise ZooError("--prune takes no folders, --prepare or --matrix: it keeps every release of the matrix file "
                           "and those of --runtime")
        keep = m.all() + (parse_runtime_specs(runtime, m, runtime_names()) if runtime else [])
        res = prune_envs(cache, keep, say)
        if json_:
            print_json({"cache": str(cache), **res})
        else:
            typer.echo(f"removed {len(res['removed'])} environment(s) and marker(s), {res['bytes'] / 2**20:.0f} MiB; "
                       f"kept {len(res['kept'])} in {cache}")
        return
    subjects = collect(paths) if paths else []
    wanted = {r for s in subjects for r in s.runtimes()} if subjects else set(runtime_names())
    specs = select_specs(m, runtime, matrix, wanted)
    if prepare:
        t0 = time.monotonic()
        rows = []
        for spec in specs:
            st = prepare_env(cache, spec, say)
            rows.append({"spec": spec.label, "package": spec.package, "state": st["state"],
                         **({"message": st["message"]} if st.get("message") else {})})
        total = dir_bytes(cache) if cache.is_dir() else 0
        if json_:
            print_json({"cache": str(cache), "bytes": total, "seconds": round(time.monotonic() - t0, 1), "environments": rows})
        else:
            for r in rows:
                typer.echo(f"{r['state']:<12} {r['spec']} ({r['package']}){': ' + r['message'] if r.get('message') else ''}")
            typer.echo(f"cache {cache}: {total / 2**20:.0f} MiB")
        return
    if not subjects:
        raise ZooError("give release or export folders (or artifact files) to test, or --prepare")
    img_paths = None
    if any(not s.release for s in subjects):
        img_paths = parity_images(images)
    doc = run_compat(subjects, specs, cache, images=img_paths, checkpoint=checkpoint, threads=threads,
                     timeout=timeout, min_evidence=MIN_EVIDENCE, say=say)
    written = save_compat(doc, subjects) if save else []
    if junit:
        cases = [{"name": f"{c['artifact']} @ {c['runtime']}=={c['version']}", "passed": c["status"] in ("PASS", "unavailable"),
                  "skipped": c["status"] == "unavailable", "failure": f"{c['status']}: {c.get('message') or ''}".strip(": "),
                  "time": c.get("seconds", 0.0)} for c in doc["results"]]
        write_junit(junit, "compat", cases)
    if json_:
        print_json(doc)
    else:
        sys.stdout.write(render_text(doc))
        for p in written:
            stderr(f"wrote {p}")
