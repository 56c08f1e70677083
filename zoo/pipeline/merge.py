"""`zoo release --merge`: join shard folders into one release whose manifest equals an unsharded run's."""
from __future__ import annotations

from pathlib import Path

from zoo.checkpoints.resolve import resolve_model
from zoo.core.errors import ZooError
from zoo.core.fsutil import copy_file_atomic, ensure_writable_dir
from zoo.core.manifest import Artifact, ArtifactKey, FileEntry, Failure, Manifest, confine, file_entries, read_manifest, verify_files, write_manifest
from zoo.pipeline.cards import CARDS, write_card
from zoo.pipeline.lock import release_lock
from zoo.pipeline.release import REPORTS, release_manifest, write_report


def read_shard(folder: Path) -> Manifest:
    m = read_manifest(folder)
    if not m.is_release:
        raise ZooError(f"{folder} is not a `zoo release` folder (no release section in its manifest)")
    return m


def merge(out: Path, sources: list[Path], progress=None) -> Manifest:
    say = progress or (lambda msg: None)
    manifests = [(Path(s), read_shard(s)) for s in sources]
    spec = manifests[0][1].release
    for s, m in manifests[1:]:
        if m.release != spec:
            raise ZooError(f"{s} is a shard of another release ({m.release} != {spec})")
    out = ensure_writable_dir(Path(out))
    with release_lock(out):
        artifacts: dict[ArtifactKey, Artifact] = {}
        failed: dict[ArtifactKey, Failure] = {}
        models: dict = {}
        extra: dict[str, FileEntry] = {}
        for s, m in manifests:
            models.update(m.models)
            for a in m.artifacts:
                if verify_files(s, a.files):
                    raise ZooError(f"{s}: files of {a.key.model}/{a.key.label()} do not match their sha256; rebuild that shard")
                artifacts[a.key] = a
                for f in a.files:
                    copy_file_atomic(s / f.path, confine(out, f.path, "merge"))
            for f in m.failed:
                failed[f.key] = f
            for f in m.files:
                if f.path in REPORTS or f.path.startswith(CARDS + "/"):
                    continue  # regenerated from the merged manifest
                if f.path in extra and extra[f.path].sha256 != f.sha256:
                    raise ZooError(f"shards disagree on {f.path}; were they built from the same inputs?")
                extra[f.path] = f
                copy_file_atomic(s / f.path, confine(out, f.path, "merge"))
        for key in list(failed):
            if key in artifacts:
                del failed[key]
        say(f"merged {len(artifacts)} artifacts from {len(manifests)} shard(s)")
        arts = list(artifacts.values())
        rels = sorted(extra)
        for mid in spec["models"]:
            rels.append(write_card(out, resolve_model(mid), [a for a in arts if a.model == mid]))
        manifest = release_manifest(spec, models, arts, list(failed.values()), file_entries(out, rels))
        write_manifest(out, manifest)
        write_report(out)
    return manifest
