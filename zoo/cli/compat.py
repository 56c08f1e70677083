"""`zoo compat`: artifacts x runtime releases, each release in its own cached environment."""
from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.exporters import runtime_names
from zoo.validation.compat import case_name, render_text
from zoo.cli.common import (CheckpointOpt, ImagesOpt, JobsOpt, JsonOpt, JunitOpt, StderrWarnings, ThreadsOpt,
                            default_jobs, print_json, stderr)
from zoo.core.errors import ZooError
from zoo.core.platforms import PLATFORMS, get_platform
from zoo.api import compat_run
from zoo.pipeline.compat import collect, select_platform_specs, select_specs
from zoo.pipeline.compat_env import compat_dir, dir_bytes, load_matrix, parse_runtime_specs, prune_envs
from zoo.pipeline.compat_platform import keep_names, prepare as prepare_any
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
    platform: Annotated[Optional[str], typer.Option(
        "--platform", help=f"Run each artifact in its runtime's build for this platform, emulated: {', '.join(PLATFORMS)}. "
                           "Default releases: those of this environment.")] = None,
    cpu: Annotated[Optional[str], typer.Option(
        "--cpu", help="With --platform: the CPU models, e.g. armv8.0,armv8.2 (default: all of the platform's).")] = None,
    images: ImagesOpt = None,
    checkpoint: CheckpointOpt = None,
    threads: ThreadsOpt = 1,
    jobs: JobsOpt = None,
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
    cpus = _cpus(platform, cpu)
    m = load_matrix()
    if prune:
        if paths or prepare or matrix or platform:
            raise ZooError("--prune takes no folders, --prepare, --matrix or --platform: it keeps every release of the "
                           "matrix file and those of --runtime, on every platform")
        keep = m.all() + (parse_runtime_specs(runtime, m, runtime_names()) if runtime else [])
        res = prune_envs(cache, keep, say, keep_names(keep))
        if json_:
            print_json({"cache": str(cache), **res})
        else:
            typer.echo(f"removed {len(res['removed'])} environment(s) and marker(s), {res['bytes'] / 2**20:.0f} MiB; "
                       f"kept {len(res['kept'])} in {cache}")
        return
    if prepare:
        subjects = collect(paths) if paths else []
        wanted = {r for s in subjects for r in s.runtimes()} if subjects else set(runtime_names())
        specs = (select_platform_specs(m, runtime, matrix, wanted, platform) if platform
                 else select_specs(m, runtime, matrix, wanted))
        t0 = time.monotonic()
        rows = []
        todo = list(specs)
        if platform:  # the same releases on this machine too, where this environment does not hold them
            todo += [s.on("") for s in specs if _installed_version(s.package) != s.version]
        for spec in todo:
            st = prepare_any(cache, spec, say)
            rows.append({"spec": spec.label, "package": spec.package, **({"platform": spec.platform} if spec.platform else {}),
                         "state": st["state"], **({"message": st["message"]} if st.get("message") else {})})
        total = dir_bytes(cache) if cache.is_dir() else 0
        if json_:
            print_json({"cache": str(cache), "bytes": total, "seconds": round(time.monotonic() - t0, 1), "environments": rows})
        else:
            for r in rows:
                where = f", {r['platform']}" if r.get("platform") else ""
                typer.echo(f"{r['state']:<12} {r['spec']} ({r['package']}{where}){': ' + r['message'] if r.get('message') else ''}")
            typer.echo(f"cache {cache}: {total / 2**20:.0f} MiB")
        return
    doc, written = compat_run(paths or [], runtime, matrix=matrix, images=images, checkpoint=checkpoint,
                              threads=threads, timeout=timeout, save=save, cpus=cpus, platform=platform,
                              jobs=jobs or default_jobs(), say=say, warnings=StderrWarnings())
    if junit:
        cases = [{"name": case_name(c), "passed": c["status"] in ("PASS", "unavailable"),
                  "skipped": c["status"] == "unavailable", "failure": f"{c['status']}: {c.get('message') or ''}".strip(": "),
                  "time": c.get("seconds", 0.0)} for c in doc["results"]]
        write_junit(junit, "compat", cases)
    if json_:
        print_json(doc)
    else:
        sys.stdout.write(render_text(doc))
        for p in written:
            stderr(f"wrote {p}")


def _cpus(platform: str | None, cpu: str | None) -> list[str] | None:
    """The CPU models of --cpu (checked against the platform's), all of the platform's without it."""
    if cpu is not None and not platform:
        raise ZooError(f"--cpu needs --platform: CPU models are those of an emulated platform ({', '.join(PLATFORMS)}); "
                       "without --platform the artifacts run on this machine's CPU")
    if not platform:
        return None
    plat = get_platform(platform)
    if cpu is None:
        return [c.name for c in plat.cpus]
    names = [c.strip() for c in cpu.split(",") if c.strip()]
    if not names:
        raise ZooError(f"--cpu is empty: give CPU models of {plat.name}, e.g. {','.join(c.name for c in plat.cpus)}")
    return list(dict.fromkeys(plat.cpu(n).name for n in names))


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
