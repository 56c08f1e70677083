"""What `zoo bench` measures: the artifacts named by release folders, manifest files or model files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoo.exporters import all_targets, get_target
from zoo.core.errors import ZooError
from zoo.core.fsutil import sha256_file
from zoo.core.manifest import MANIFEST, Artifact, FileEntry, Manifest, read_manifest
from zoo.core.meta import companion, file_suffix, read_meta, sidecar_path


@dataclass
class BenchItem:
    """One artifact to measure."""

    model: str
    target: str
    precision: str
    head: str
    primary: Path  # absolute path of the file a runtime opens
    display: str  # how it is named in output (folder/relative or the path given)
    meta: dict
    size_bytes: int  # the artifact's model files, metadata sidecar excluded
    folder: Path | None = None  # the release folder it belongs to (bench.json goes there)
    rel: str | None = None  # primary relative to folder
    sha256: str | None = None  # of the primary file

    def label(self) -> str:
        return f"{self.model} {self.target}/{self.precision}/{self.head}" + ("/dynamic" if self.meta.get("dynamic") else "")


def model_files(a: Artifact) -> list[FileEntry]:
    """The files that make up the model: everything but the JSON metadata sidecar."""
    side = str(sidecar_path(Path(a.primary)))
    return [f for f in a.files if f.path != side]


def _items_from_manifest(folder: Path, manifest: Manifest) -> list[BenchItem]:
    if not manifest.artifacts:
        raise ZooError(f"{folder / MANIFEST} lists no artifacts: nothing to benchmark")
    top = manifest.model or {}
    out = []
    for a in manifest.artifacts:
        primary = folder / a.primary  # confined to the folder by read_manifest
        if not primary.is_file():
            raise ZooError(f"artifact file missing: {primary} (listed in {folder / MANIFEST}; run `zoo check {folder}`)")
        files = model_files(a)
        out.append(BenchItem(
            model=a.model or a.meta.get("model_id") or top.get("id", "?"),
            target=a.target, precision=a.precision, head=a.head,
            primary=primary.resolve(), display=str(folder / a.primary), meta=a.meta,
            size_bytes=sum(f.bytes for f in files), folder=folder, rel=a.primary, sha256=a.file(a.primary).sha256,
        ))
    return out


def _suffix_map() -> dict[str, list]:
    m: dict[str, list] = {}
    for t in all_targets():
        for i, s in enumerate(t.suffixes):
            m.setdefault(s.lower(), []).append((t, i))
    return m


def _item_from_file(path: Path) -> BenchItem:
    smap = _suffix_map()
    suffix = file_suffix(path.name).lower()
    if suffix not in smap:
        known = ", ".join(sorted(smap))
        raise ZooError(f"unknown file type {path.name!r}: expected a release folder, a manifest.json or a model file ({known})")
    primary = path
    for t, i in smap[suffix]:
        if i > 0:  # a companion file (weights of a two-file format): bench its primary
            cand = companion(path, t.suffixes[0])
            if cand.is_file():
                primary = cand
                break
    if primary is path and all(i > 0 for _, i in smap[suffix]):
        raise ZooError(f"{path.name} is the companion of a model file that is not beside it (expected "
                       f"{' or '.join(companion(path, t.suffixes[0]).name for t, _ in smap[suffix])})")
    meta = read_meta(primary)
    parts = [p for p in (companion(primary, s) for s in get_target(meta.target).suffixes) if p.is_file()]
    if primary not in parts:
        parts.insert(0, primary)
    return BenchItem(
        model=meta.model_id, target=meta.target, precision=meta.precision, head=meta.head,
        primary=primary.resolve(), display=str(primary), meta=meta.to_dict(),
        size_bytes=sum(p.stat().st_size for p in parts), sha256=sha256_file(primary),
    )


def collect_items(paths: list[Path]) -> list[BenchItem]:
    """Artifacts named by release folders, manifest.json files or artifact files (in that order, no duplicates)."""
    if not paths:
        raise ZooError("nothing to benchmark: give a release folder or artifact files")
    items: list[BenchItem] = []
    for p in map(Path, paths):
        if p.is_dir():
            items += _items_from_manifest(p, read_manifest(p))
        elif p.is_file() and p.name == MANIFEST:
            items += _items_from_manifest(p.parent, read_manifest(p))
        elif p.is_file():
            items.append(_item_from_file(p))
        else:
            raise ZooError(f"not found: {p}")
    seen, unique = set(), []
    for it in items:
        if it.primary not in seen:
            seen.add(it.primary)
            unique.append(it)
    return unique
