"""`zoo publish` and `zoo pull`: a verified release folder as one OCI artifact, and back.

The artifact holds exactly ``manifest.json`` and the files it lists, one layer per file (titled with its
path, a media type per format, the artifact it belongs to annotated), in the manifest's own order; the
manifest.json is both the config blob and a layer (so a generic `oras pull` gets a complete folder).
Nothing else of the folder (REPORT.md, REPORT.html, bench.json, ...) is ever sent. The OCI manifest is built from the
release manifest alone, with no time in it: the same release gives the same digest.

A pull takes the OCI manifest, then the release manifest (the config), checks the one against the
other (every layer is a listed file with its sha256 and size, and every listed file has its layer),
fetches the selected blobs into a temporary folder beside --out, each checked against its digest, and
renames that folder into place only when all is there: nothing half-written.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from zoo.checkpoints import loader
from zoo.core import upstream
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_text
from zoo.core.manifest import MANIFEST, Manifest, confine, read_manifest
from zoo.pipeline.cards import CARDS
from zoo.pipeline.golden import GOLDEN
from zoo.pipeline.oci import (
    TITLE,
    BlobMismatch,
    Descriptor,
    OciManifest,
    Reference,
    Registry,
    RegistryError,
    parse_manifest,
    parse_reference,
    safe_relpath,
    sha256_digest,
)
from zoo.pipeline.verify import PULL_RECORD, left_out_paths, pull_record_text

VND = "application/vnd.ultraface"
ANN = "vnd.ultraface"  # the prefix of our annotation keys
CONFIG_MEDIA_TYPE = f"{VND}.manifest.v1+json"
MAX_CONFIG_BYTES = 64 << 20
#: never part of an artifact, whatever the folder holds (derived, machine-specific, or local records)
NEVER = ("bench.json", "compat.json", "timings.json", "REPORT.md", "REPORT.html", PULL_RECORD)

_BY_SUFFIX = {
    ".onnx": "onnx", ".mnn": "mnn", ".tflite": "tflite", ".param": "ncnn.param",
    ".prototxt": "caffe.prototxt", ".caffemodel": "caffe.caffemodel",
}


def media_type(path: str, target: str | None = None) -> str:
    """The media type of a release file: one per format (``application/vnd.ultraface.mnn``, ...), the
    artifact metadata sidecars, the golden kit and the model cards."""
    if path == MANIFEST:
        return CONFIG_MEDIA_TYPE
    suffix = os.path.splitext(path)[1].lower()
    if path.startswith(f"{GOLDEN}/"):
        return f"{VND}.golden.image" if path.startswith(f"{GOLDEN}/images/") else (
            f"{VND}.golden.npy" if suffix == ".npy" else f"{VND}.golden+json" if suffix == ".json" else f"{VND}.golden")
    if path.startswith(f"{CARDS}/"):
        return f"{VND}.card+markdown"
    if target is None:
        return f"{VND}.file"
    if suffix == ".json":
        return f"{VND}.meta+json"
    if suffix in _BY_SUFFIX:
        return f"{VND}.{_BY_SUFFIX[suffix]}"
    tgt = target if target.isascii() and target.isalnum() else "file"
    return f"{VND}.{tgt}.{suffix.lstrip('.')}" if suffix[1:].isascii() and suffix[1:].isalnum() else f"{VND}.{tgt}"


def _annotations(m: Manifest, config_digest: str) -> dict:
    """What a registry UI or `oras manifest fetch` shows: the models, their checkpoints and licence, the
    upstream commit the checkpoints come from, the zoo version that built the release. No time."""
    ids = list(m.release.get("models") or [])
    by_sha = {c.sha256: c for c in loader.manifest().values()}
    a = {TITLE: f"ultraface-zoo release {','.join(ids)}", "org.opencontainers.image.version": m.zoo_version,
         f"{ANN}.models": ",".join(ids),
         f"{ANN}.targets": ",".join(map(str, m.release.get("targets") or [])),
         f"{ANN}.precisions": ",".join(map(str, m.release.get("precisions") or [])),
         f"{ANN}.manifest.sha256": config_digest.split(":", 1)[1]}
    licences, known = set(), False
    for mid in ids:
        sha = str((m.models.get(mid) or {}).get("checkpoint_sha256", ""))
        a[f"{ANN}.{mid}.checkpoint.sha256"] = sha
        entry = by_sha.get(sha)
        if entry is not None:
            a[f"{ANN}.{mid}.licence"] = entry.licence
            licences.add(entry.licence)
            known = True
    if len(ids) == 1:
        a[f"{ANN}.model"] = ids[0]
        a[f"{ANN}.checkpoint.sha256"] = a[f"{ANN}.{ids[0]}.checkpoint.sha256"]
    if licences:
        a["org.opencontainers.image.licenses"] = " AND ".join(sorted(licences))
    if known:  # the checkpoints of the pinned table: the original repository at its pinned commit
        a["org.opencontainers.image.source"] = upstream.REPOSITORY
        a["org.opencontainers.image.revision"] = upstream.PINNED_COMMIT
    return a


@dataclass
class Package:
    """A release folder as an OCI artifact: its manifest bytes, and each layer with its file."""

    manifest: Manifest
    config: bytes
    oci: OciManifest
    files: dict  # title -> Path

    @property
    def digest(self) -> str:
        return sha256_digest(self.oci.to_bytes())


def package(folder: Path) -> Package:
    """The OCI artifact of a release folder (from its manifest's records; no registry needed)."""
    folder = Path(folder)
    m = read_manifest(folder)
    if not m.is_release:
        raise ZooError(f"{folder} is not a `zoo release` folder; only releases are published")
    left = left_out_paths(folder, m)
    if left:
        raise ZooError(f"{folder} is a partial pull ({PULL_RECORD} leaves out {len(left)} file(s)); "
                       "publish a complete release")
    config = (folder / MANIFEST).read_bytes()
    cfg = Descriptor(CONFIG_MEDIA_TYPE, sha256_digest(config), len(config))
    layers = [Descriptor(CONFIG_MEDIA_TYPE, cfg.digest, cfg.size, {TITLE: MANIFEST})]
    files = {MANIFEST: folder / MANIFEST}
    for a in m.artifacts:
        for f in a.files:
            safe_relpath(f.path, f"{folder / MANIFEST}: artifact {a.key}")
            ann = {TITLE: f.path, f"{ANN}.model": a.model, f"{ANN}.target": a.target,
                   f"{ANN}.precision": a.precision, f"{ANN}.head": a.head}
            if f.path == a.primary:
                ann[f"{ANN}.primary"] = "true"
            layers.append(Descriptor(media_type(f.path, a.target), "sha256:" + f.sha256, f.bytes, ann))
            files[f.path] = folder / f.path
    for f in m.files:
        safe_relpath(f.path, str(folder / MANIFEST))
        layers.append(Descriptor(media_type(f.path), "sha256:" + f.sha256, f.bytes, {TITLE: f.path}))
        files[f.path] = folder / f.path
    oci = OciManifest(cfg, tuple(layers), _annotations(m, cfg.digest))
    return Package(m, config, oci, files)


def describe(pkg: Package, ref: Reference | None) -> dict:
    return {"ref": str(ref) if ref else None, "digest": pkg.digest, "manifest_bytes": len(pkg.oci.to_bytes()),
            "total_bytes": sum(x.size for x in pkg.oci.layers),
            "layers": [{"title": x.title, "mediaType": x.media_type, "digest": x.digest, "size": x.size}
                       for x in pkg.oci.layers],
            "annotations": pkg.oci.annotations}


def preflight(pkg: Package, ref: Reference, insecure: bool = False, force: bool = False) -> str | None:
    """Before any work: the registry answers and lets us in, and the tag is free, already this release,
    or ``force`` allows moving it. Returns the digest the tag points at now (None: a new tag)."""
    if ref.tag is None:
        raise ZooError(f"--to {ref}: publish to a tag (oci://HOST/REPO:TAG), not a digest")
    reg = Registry(ref, insecure)
    reg.ping()
    previous = reg.manifest_digest(ref.tag)
    if previous is not None and previous != pkg.digest and not force:
        raise ZooError(f"tag {ref} exists with a different digest ({previous}; this release is {pkg.digest}); "
                       "refusing to move it (--force replaces it)")
    return previous


def publish(pkg: Package, ref: Reference, insecure: bool = False, force: bool = False, progress=None) -> dict:
    """Push a packaged (and already verified) release to ``ref`` (a tag). Refuses a tag that points at
    another digest unless ``force``; blobs the registry already has are not sent again."""
    say = progress or (lambda msg: None)
    t0 = time.monotonic()
    previous = preflight(pkg, ref, insecure, force)
    reg = Registry(ref, insecure)
    pushed = present = 0
    sent = 0
    seen = set()
    for x in (pkg.oci.config, *pkg.oci.layers):
        if x.digest in seen:
            continue
        seen.add(x.digest)
        if reg.has_blob(x.digest):
            present += 1
            continue
        data = pkg.config if x.digest == pkg.oci.config.digest else pkg.files[x.title].read_bytes()
        if sha256_digest(data) != x.digest or len(data) != x.size:
            raise ZooError(f"{x.title} changed since it was verified; nothing more was pushed")
        say(f"pushing {x.title or MANIFEST} ({x.size} bytes)")
        reg.push_blob(x.digest, data)
        pushed += 1
        sent += len(data)
    digest = reg.put_manifest(ref.tag, pkg.oci.to_bytes())
    out = describe(pkg, ref)
    out.update({"digest": digest, "previous_digest": previous, "blobs_pushed": pushed, "blobs_present": present,
                "bytes_sent": sent, "push_seconds": round(time.monotonic() - t0, 3)})
    return out


# --------------------------------------------------------------------------- pull

def check_against_release(oci: OciManifest, m: Manifest, config: Descriptor) -> dict[str, Descriptor]:
    """The layers by title, once proven to be exactly the release's files: each listed file has one
    layer with its sha256 and size, and no layer is anything else. BlobMismatch otherwise."""
    expected = {MANIFEST: (config.digest, config.size)}
    expected.update({f.path: ("sha256:" + f.sha256, f.bytes) for f in m.all_files()})
    layers = oci.by_title()
    extra = sorted(set(layers) - set(expected))
    missing = sorted(set(expected) - set(layers))
    if extra or missing:
        what = f"layer {extra[0]!r} is not a file of its release manifest" if extra else \
            f"the release manifest lists {missing[0]!r}, which has no layer"
        raise BlobMismatch(f"the registry artifact does not match its release manifest: {what}")
    for title, (digest, size) in expected.items():
        if (layers[title].digest, layers[title].size) != (digest, size):
            raise BlobMismatch(f"the registry artifact does not match its release manifest: layer {title!r} is "
                               f"{layers[title].digest[:19]}... ({layers[title].size} bytes), the manifest records "
                               f"{digest[:19]}... ({size} bytes)")
    return layers


def select(m: Manifest, targets: list[str] | None, precisions: list[str] | None) -> tuple[list, list[str]]:
    """(the artifacts an app asked for, the paths to fetch): their files, the golden kit of their models
    and the manifest. All of them when neither is given."""
    arts = list(m.artifacts)
    if targets:
        have = sorted({a.target for a in arts})
        unknown = [t for t in targets if t not in have]
        if unknown:
            raise ZooError(f"--target {unknown[0]!r}: this release has {', '.join(have)}")
        arts = [a for a in arts if a.target in targets]
    if precisions:
        have = sorted({a.precision for a in arts})
        unknown = [p for p in precisions if p not in have]
        if unknown:
            raise ZooError(f"--precision {unknown[0]!r}: this release has {', '.join(have)}"
                           + (f" for {', '.join(targets)}" if targets else ""))
        arts = [a for a in arts if a.precision in precisions]
    if not targets and not precisions:
        return arts, [MANIFEST] + [f.path for f in m.all_files()]
    models = {a.model for a in arts}
    paths = [MANIFEST] + [f.path for a in arts for f in a.files]
    paths += [f.path for f in m.files if f.path.startswith(f"{GOLDEN}/images/")
              or any(f.path.startswith(f"{GOLDEN}/{mid}/") for mid in models)]
    return arts, paths


def pull(ref_text: str, out: Path, insecure: bool = False, targets: list[str] | None = None,
         precisions: list[str] | None = None, progress=None) -> dict:
    say = progress or (lambda msg: None)
    ref = parse_reference(ref_text, "reference")
    out = Path(out)
    if os.path.lexists(out) and (not out.is_dir() or out.is_symlink() or any(out.iterdir())):
        raise ZooError(f"--out {out} exists and is not an empty folder; pull into a new one")
    reg = Registry(ref, insecure)
    t0 = time.monotonic()
    data, digest = reg.get_manifest(ref.ref)
    oci = parse_manifest(data, f"the manifest of {ref}")
    if oci.config.media_type != CONFIG_MEDIA_TYPE:
        raise RegistryError(f"{ref} is not a zoo release (its config is {oci.config.media_type!r}, "
                            f"not {CONFIG_MEDIA_TYPE!r})")
    if oci.config.size > MAX_CONFIG_BYTES:
        raise RegistryError(f"{ref}: its release manifest declares {oci.config.size} bytes; refusing it")
    with tempfile.TemporaryDirectory(prefix="zoo-pull-") as td:
        reg.fetch_blob(oci.config, Path(td) / "config")
        config = (Path(td) / "config").read_bytes()
    try:
        m = Manifest.from_dict(json.loads(config), f"{MANIFEST} of {ref}")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise RegistryError(f"{ref}: its release manifest is not JSON") from None
    if not m.is_release:
        raise RegistryError(f"{ref}: its manifest is not a release's")
    for f in m.all_files():
        safe_relpath(f.path, f"{MANIFEST} of {ref}")
    layers = check_against_release(oci, m, oci.config)
    arts, paths = select(m, targets, precisions)
    partial = bool(targets or precisions)
    fetched = 0
    with atomic_dir(out) as tmp:
        m.confine(tmp, f"{MANIFEST} of {ref}")
        for rel in paths:
            if rel == MANIFEST:
                continue
            desc = layers[rel]
            dest = confine(tmp, rel, f"{MANIFEST} of {ref}")
            say(f"pulling {rel} ({desc.size} bytes)")
            with atomic_path(dest, "pull") as part:
                reg.fetch_blob(desc, part)
            fetched += desc.size
        atomic_write_bytes(tmp / MANIFEST, config)
        left = sorted(set(layers) - set(paths))
        atomic_write_text(tmp / PULL_RECORD, pull_record_text(
            str(ref), digest, targets if partial else None, precisions if partial else None, left))
    return {"ref": str(ref), "digest": digest, "out": str(out), "partial": partial,
            "artifacts": [str(a.key) for a in arts], "files": sorted(paths), "left_out": left,
            "bytes": fetched + len(config), "pull_seconds": round(time.monotonic() - t0, 3)}
