"""`zoo release`: the whole matrix (models x targets x precisions) into one folder, resumable and shardable."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from zoo.checkpoints.resolve import resolve_model
from zoo.exporters import target_names
from zoo.validation.parity import MIN_EVIDENCE
from zoo.validation.report import build_report, render_markdown
from zoo.validation.report.html import render_html
from zoo.core.fsutil import atomic_write_text, ensure_writable_dir
from zoo.core.isolation import kill_active_workers
from zoo.core.images import default_calibration
from zoo.core.manifest import Artifact, Failure, Manifest, file_entries, existing_manifest, write_manifest
from zoo.core.model.specs import get_spec
from zoo.core.parity_set import default_images
from zoo.core.schedule import PriorityPool
from zoo.pipeline.build import artifact_verifies, build_artifacts
from zoo.pipeline.cards import write_card
from zoo.pipeline.golden import write_golden
from zoo.pipeline.lock import clean_stale_work, release_lock
from zoo.pipeline.plan import matrix, plan_of, shard_of, withheld_in
from zoo.pipeline.report_page import compute_views
from zoo.pipeline.worker import warm_workers

REPORT = "REPORT.md"
REPORT_HTML = "REPORT.html"
#: the derived views beside a release's manifest: never hashed in it, never merged or published
REPORTS = (REPORT, REPORT_HTML)


def release_manifest(spec: dict, models: dict, artifacts: list[Artifact], failed: list[Failure], files) -> Manifest:
    m = Manifest(artifacts=list(artifacts), failed=list(failed), release=spec,
                 models={k: models[k] for k in spec["models"] if k in models}, files=list(files))
    return m.sorted(target_names())


def write_report(out: Path, warm=None) -> None:
    """REPORT.md and REPORT.html: `zoo report`'s Markdown and HTML page of the release (sizes, parity, the
    faces and error curves; latency once `zoo bench` ran). ``warm``: the run's warm workers (the page runs
    each artifact on its photo).

    Derived views, not hashed in the manifest: `zoo report DIR --out DIR/REPORT.md` (and `--format html
    --out DIR/REPORT.html`) after `zoo bench DIR` regenerates them with latencies without breaking `zoo verify`.
    """
    rep = build_report([out])
    atomic_write_text(out / REPORT, render_markdown(rep))
    atomic_write_text(out / REPORT_HTML, render_html(rep, compute_views(out, rep, warm=warm)))


def release(
    out: Path,
    models: list[str],
    targets: list[str],
    precisions: list[str],
    jobs: int = 1,
    images: list[Path] | None = None,
    calib: list[Path] | None = None,
    shard: tuple[int, int] | None = None,
    threads: int = 1,
    timeout: float | None = None,
    progress=None,
    min_evidence: int = MIN_EVIDENCE,
    timings: list | None = None,
    with_withheld: bool = False,
) -> Manifest:
    """``with_withheld``: build the flavours withheld from the default matrix too (zoo.core.withheld); by
    default they are left out, and the release's spec lists them (``release["withheld"]``, each with its
    measured reason) so the manifest, its report and a resumed run say what was not offered and why."""
    for m in models:
        get_spec(m)  # unknown ids fail before anything is written
    entries = shard_of(matrix(models, targets, precisions, with_withheld), shard)
    out = ensure_writable_dir(Path(out))
    images_s = [str(p) for p in (images or default_images())]  # the pinned photos (zoo.core.parity_set)
    calib_s = [str(p) for p in (calib or default_calibration())]
    spec = {"models": models, "targets": targets, "precisions": precisions}
    left_out = [] if with_withheld else withheld_in(models, targets, precisions)
    if left_out:
        spec["withheld"] = [w.to_dict() for w in left_out]
    with release_lock(out):
        clean_stale_work(out)
        old = existing_manifest(out)
        previous: list[Artifact] = old.artifacts if old is not None and old.release == spec else []
        artifacts: list[Artifact] = []
        failed: list[Failure] = []
        model_info: dict = {}
        mutex = threading.Lock()

        # previous artifacts whose files still verify: hashed once here, not again as each artifact lands
        # (a rebuilt one replaces only its own files, and it is dropped by key below)
        intact = [a for a in previous if artifact_verifies(out, a)]

        unchanged = {(a.key, a.inputs_sha256, tuple(a.files)) for a in intact}

        def on_done(item, ok):
            # after each artifact lands: a killed run resumes from here (an up-to-date one is in the
            # manifest on disk already: rewriting the whole manifest for it only cost time)
            with mutex:
                (artifacts if isinstance(item, Artifact) else failed).append(item)
                if isinstance(item, Artifact) and (item.key, item.inputs_sha256, tuple(item.files)) in unchanged:
                    return
                new = {x.key for x in [*artifacts, *failed]}
                kept = [a for a in intact if a.key not in new]
                write_manifest(out, release_manifest(spec, model_info, kept + artifacts, failed, []))

        extra: list[str] = []
        resolved = {m: resolve_model(m) for m in models}
        for m in models:
            model_info[m] = resolved[m].describe()
        # the models are built side by side in one set of --jobs slots; the largest input first: its
        # int8 calibration is the release's longest chain of work, and the others fill the slots its
        # jobs leave idle while they wait for each other (the PyTorch reference, then the analysis)
        by_size = sorted(models, key=lambda m: -(resolved[m].spec.input_size[0] * resolved[m].spec.input_size[1]))
        with warm_workers() as warm, PriorityPool(jobs) as slots, \
                ThreadPoolExecutor(max_workers=len(models), thread_name_prefix="model") as builders:
            try:
                builds = []
                for m in models:
                    mine = [j for mm, j in entries if mm == m]
                    if mine:
                        builds.append(builders.submit(
                            build_artifacts, resolved[m], plan_of(mine), out, images_s, calib_s, {}, threads, jobs,
                            timeout, progress, previous=[a for a in previous if a.model == m], on_done=on_done,
                            min_evidence=min_evidence, timings=timings, warm=warm, slots=slots,
                            rank=by_size.index(m)))
                for m in models:  # while the workers build: PyTorch's outputs on the golden images
                    extra += write_golden(out, resolved[m])
                for b in builds:
                    b.result()
                for m in models:
                    extra.append(write_card(out, resolved[m], [a for a in artifacts if a.model == m]))
                manifest = release_manifest(spec, model_info, artifacts, failed, file_entries(out, extra))
                write_manifest(out, manifest)
                write_report(out, warm)  # in the warm processes the artifacts were built in
            except BaseException:  # an interrupt: nothing queued or new starts, what runs is stopped
                slots.close(cancel=True)
                kill_active_workers()
                raise
    return manifest
