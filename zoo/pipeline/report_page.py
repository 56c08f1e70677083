"""`zoo report --format html`: the page of a release, with what is computed at report time.

    rep, text = html_report([Path("release")])                 # the page of one release
    rep, text = html_report([Path("old"), Path("new")])        # what changed, then the new release's page

Per artifact, the photo where it departs most from PyTorch (by the manifest's ``parity.per_image``) is
run through it and through PyTorch, in an isolated worker of its runtime (job kind "report",
zoo.pipeline.worker), and for fp16 and int8 the layer-by-layer error of `zoo diff` on that photo
(``diff=False``: skipped). Parity photos are never stored in a release: that photo is looked for, by
name and sha256, in ``ZOO_IMAGES_DIR`` and the photo cache, never fetched. Without it the release's
golden kit photos (their PyTorch outputs stored beside them) are used and the page says so.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from zoo.checkpoints import loader
from zoo.exporters import get_target
from zoo.validation.report import build_report
from zoo.validation.report.html import render_html
from zoo.core.errors import ZooError
from zoo.core.fsutil import sha256_file
from zoo.core.images import builtin_images, read_bgr
from zoo.core.manifest import base_precision, read_manifest, verify_files
from zoo.core.parity_set import ENV_IMAGES, cache_dir
from zoo.pipeline.golden import image_rels, reference_dir
from zoo.pipeline.worker import run_worker, warm_workers

#: the long side of a photo embedded in the page (pixels); boxes stay in the photo's own coordinates
PHOTO_SIDE = 1024
JPEG_QUALITY = 82
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,150}$")


def _photo_dirs() -> list[tuple[Path, str]]:
    out = []
    env = os.environ.get(ENV_IMAGES)
    if env:
        out.append((Path(env).expanduser(), ENV_IMAGES))
    out.append((cache_dir(), "photo cache"))
    return out


def find_photo(name: str, sha256: str | None) -> tuple[Path, str] | None:
    """A parity photo at hand: ``name`` in ZOO_IMAGES_DIR or the photo cache with the sha256 the manifest
    recorded (a file of that name with other content is not it); None when absent. Never fetched."""
    if not _SAFE_NAME.match(name) or ".." in name:
        return None
    for folder, source in _photo_dirs():
        p = folder / name
        if p.is_file() and (sha256 is None or sha256_file(p) == sha256):
            return p, source
    return None


def _worst_photo(parity: dict) -> tuple[str, str | None, dict] | None:
    """(name, sha256, counts) of the photo where the artifact departs most from PyTorch by its parity
    result: most faces missed + extra, then borderline, then the largest score change (first on ties)."""
    rows = parity.get("per_image") or []
    if not rows:
        return None

    def n(r, k):
        return r.get(k) or 0

    worst = max(enumerate(rows), key=lambda ir: (n(ir[1], "missed") + n(ir[1], "extra"), n(ir[1], "borderline"),
                                                 n(ir[1], "max_score_change"), -ir[0]))[1]
    sha = next((g["sha256"] for g in parity.get("gate") or [] if g["name"] == worst["image"]), None)
    return worst["image"], sha, worst


def _checkpoint(sha: str | None) -> Path | None:
    """The published checkpoint of that sha256 when it is at hand (ZOO_CHECKPOINT_DIR or the cache): never
    downloaded by a report."""
    for entry in loader.manifest().values():
        if entry.sha256 == sha:
            try:
                return loader.resolve(entry, download=False)
            except ZooError:
                return None
    return None


def _encode(path: Path) -> dict:
    """The photo as a JPEG for the page, its long side at most PHOTO_SIDE (deterministic for one file)."""
    import cv2  # heavy: OpenCV

    img = read_bgr(path)
    if img is None:
        raise ZooError(f"cannot read the photo {path}")
    h, w = img.shape[:2]
    scale = min(1.0, PHOTO_SIDE / max(h, w))
    small = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else img
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    if not ok:
        raise ZooError(f"cannot encode the photo {path}")
    return {"width": w, "height": h, "jpeg": buf.tobytes()}


def compute_views(folder: Path, rep: dict, diff: bool = True, threads: int = 1, progress=None, warm=None) -> dict:
    """What the page shows that the release does not store: per artifact its photo's faces and (fp16,
    int8) the layer-by-layer error; the photos, once each. ``warm``: warm workers to run in (default:
    this call's own)."""
    with contextlib.ExitStack() as stack:
        if warm is None:
            warm = stack.enter_context(warm_workers())
        return _views(folder, rep, diff, threads, say=progress or (lambda msg: None), warm=warm)


def _views(folder: Path, rep: dict, diff: bool, threads: int, say, warm) -> dict:
    folder = Path(folder)
    manifest = read_manifest(folder)
    if folder.is_file():
        folder = folder.parent
    by_primary = {a.primary: a for a in manifest.artifacts}
    golden = [folder / p for p in image_rels([f.path for f in manifest.files])]
    golden_ok = bool(golden) and not verify_files(folder, [f for f in manifest.files if f.path.startswith("golden/")])
    views: dict = {"photos": {}, "artifacts": {}, "notes": [], "diff": diff}
    missing_photos: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="zoo-report-") as td:
        for ra in rep["artifacts"]:
            a = by_primary.get(ra["primary"])
            view: dict = {}
            views["artifacts"][ra["primary"]] = view
            if a is None:
                continue
            wants_diff = base_precision(a.precision) in ("fp16", "int8")
            broken = verify_files(folder, a.files)
            if broken:
                view["faces_note"] = f"not run: {broken[0]} (the file changed since the release: `zoo verify`)"
                view["diff_note"] = "not run: the artifact's files changed since the release"
                continue
            target = get_target(a.target)
            if not target.available():
                view["faces_note"] = f"not run: the {a.target} runtime is not installed here"
                view["diff_note"] = f"the {a.target} runtime is not installed here"
                continue
            ckpt = _checkpoint(a.lineage.get("checkpoint_sha256") or a.meta.get("checkpoint_sha256"))
            worst = _worst_photo(ra["parity"])
            found = find_photo(worst[0], worst[1]) if worst else None
            job = {"kind": "report", "target": a.target, "meta": a.meta, "primary": str(folder / a.primary),
                   "threads": threads, "diff": bool(diff and wants_diff and ckpt is not None)}
            if found is not None and ckpt is not None:
                photos, source = [found[0]], found[1]
                why = "where it departs most from PyTorch, by the release's parity results"
            else:
                if worst and found is None:
                    missing_photos.add(worst[0])
                photos = golden if golden_ok else builtin_images()
                source = "golden kit" if golden_ok else "built-in photos"
                why = (f"the parity photo {worst[0]} is not at hand ({ENV_IMAGES} or the photo cache)" if worst and found is None
                       else "the checkpoint is not at hand" if worst else "no per-photo parity results recorded")
                why += f"; the {source} photo where it departs most instead"
                if golden_ok:
                    job["reference_dir"] = str(reference_dir(folder, a.model))
                elif ckpt is None:
                    view["faces_note"] = "not run: neither the checkpoint nor a golden kit is at hand"
                    view["diff_note"] = "the checkpoint is not at hand"
                    continue
            if ckpt is not None:
                job["checkpoint"] = str(ckpt)
                job["checkpoint_sha256"] = a.lineage.get("checkpoint_sha256") or a.meta.get("checkpoint_sha256")
            job["images"] = [str(p) for p in photos]
            say(f"report: {a.key} ...")
            res = run_worker(job, Path(td), target.timeout, re.sub(r"[^A-Za-z0-9.-]", "-", str(a.key)), warm=warm)
            if not res.get("ok"):
                view["faces_note"] = f"not run: {res.get('error')}"
                view["diff_note"] = f"not run: {res.get('error')}"
                continue
            ph = res["photos"][res["worst"]]
            path = photos[res["worst"]]
            pid = "photo-" + sha256_file(path)[:16]
            if pid not in views["photos"]:
                try:
                    views["photos"][pid] = {"name": path.name, "source": source, **_encode(path)}
                except ZooError as e:  # the page goes on without this photo, saying why
                    view["faces_note"] = f"not shown: {e}"
                    continue
            view["faces"] = {"photo": pid, "image": ph["image"], "why": why, "kept": ph["kept"], "missed": ph["missed"],
                             "extra": ph["extra"], "borderline": ph["borderline"], "counts": ph["counts"]}
            if res.get("diff"):
                view["diff"] = res["diff"]
            elif wants_diff:
                view["diff_note"] = ("skipped: --no-diff" if not diff else res.get("diff_error")
                                     or "skipped: the checkpoint is not at hand")
    if missing_photos:
        views["photo_note"] = (f"{len(missing_photos)} parity photo(s) not at hand ({', '.join(sorted(missing_photos)[:6])}"
                               f"{', ...' if len(missing_photos) > 6 else ''}): set {ENV_IMAGES} to a copy of the pinned "
                               "photos; the golden kit's photos are shown instead where noted.")
    return views


def html_report(folders: list[Path], bench_path: Path | None = None, diff: bool = True, threads: int = 1,
                progress=None) -> tuple[dict, str]:
    """(the report data of the newest folder, the page). One folder: its page; two (OLD NEW): what
    changed from OLD to NEW, then NEW's page."""
    folders = [Path(f) for f in folders]
    if not folders or len(folders) > 2:
        raise ZooError("--format html takes one release folder, or two (OLD NEW) to show what changed")
    old = build_report([folders[0]]) if len(folders) == 2 else None
    rep = build_report([folders[-1]], bench_path if len(folders) == 1 else None)
    if bench_path is not None and len(folders) == 2:
        raise ZooError("--bench FILE goes with exactly one release folder")
    views = compute_views(folders[-1], rep, diff=diff, threads=threads, progress=progress)
    return rep, render_html(rep, views, old)
