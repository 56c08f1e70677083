"""Integrity on use: an artifact's files against the hashes recorded when it was written, and a
runtime's outputs against what the artifact's metadata says they are.

- ``sidecar_files`` computes the ``"files"`` entry a sidecar records: ``{name: {"sha256", "bytes"}}``
  for every file of the artifact (names relative to the sidecar's folder, the sidecar itself left out).
- ``verify_artifact(primary)`` checks the artifact's files against the folder's manifest.json when
  one lists the artifact, else against its sidecar's ``"files"``; a mismatch (a corrupt file, or a
  companion file of another model) is a ZooError naming the file.
- ``output_problem(out, meta)`` says whether canonical outputs can be what ``meta`` describes
  (finite, softmaxed scores, boxes of the declared head), so a sidecar that disagrees with its file
  is refused instead of producing garbage detections.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np

from zoo.core.errors import ZooError
from zoo.core.fsutil import sha256_file
from zoo.core.manifest import MANIFEST, base_precision, confine
from zoo.core.meta import ArtifactMeta, manifest_entry, read_sidecar, sidecar_path, unreadable_manifests
from zoo.core.model import priors as P
from zoo.core.model.processing import softmax_problem

NO_VERIFY_HINT = "--no-verify skips this check"


# --------------------------------------------------------------------------- writing

def sidecar_files(out_dir: Path, primary: Path, files) -> dict[str, dict]:
    """The sidecar's ``"files"`` entry for an artifact whose files (relative to ``out_dir``) are ``files``."""
    side = sidecar_path(primary)
    base = Path(out_dir) / side.parent
    out: dict[str, dict] = {}
    for rel in files:
        rel = Path(rel)
        if rel == side:
            continue
        name = PurePosixPath(Path(os.path.relpath(Path(out_dir) / rel, base)).as_posix())
        if name.parts and name.parts[0] == "..":
            raise ZooError(f"artifact file {rel} is not in (or below) its sidecar's folder {side.parent}")
        full = Path(out_dir) / rel
        out[str(name)] = {"sha256": sha256_file(full), "bytes": full.stat().st_size}
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- checking

def _sidecar_entries(side: Path, primary: Path) -> list[tuple[Path, str, int]] | None:
    """(file, sha256, bytes) the sidecar records, or None when it records none (an older sidecar)."""
    files = read_sidecar(side).get("files")
    if files is None:
        return None
    where = f"the metadata sidecar {side}"
    if not isinstance(files, dict) or not files:
        raise ZooError(f"{where}: 'files' must be a non-empty object {{name: {{sha256, bytes}}}}")
    out = []
    for name, rec in files.items():
        full = confine(side.parent, name, where)
        sha = rec.get("sha256") if isinstance(rec, dict) else None
        size = rec.get("bytes") if isinstance(rec, dict) else None
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise ZooError(f"{where}: the sha256 of {name!r} is not 64 hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ZooError(f"{where}: the size of {name!r} is not a non-negative integer")
        out.append((full, sha, size))
    if not any(f.resolve() == primary.resolve() for f, _, _ in out):
        raise ZooError(f"{where}: 'files' records no hash for {primary.name}, the file it describes")
    return out


def file_mismatch(path: Path, sha256: str, size: int, source: str) -> str | None:
    """One line saying how ``path`` differs from what ``source`` recorded, or None when it matches."""
    try:
        if not path.is_file():
            return f"{path}: missing (listed in {source})"
        if path.stat().st_size != size or sha256_file(path) != sha256:
            return (f"{path}: sha256 does not match {source} (corrupt, or a file of another model); "
                    f"refusing it ({NO_VERIFY_HINT})")
    except OSError as e:
        return f"{path}: unreadable ({e.strerror or e})"
    return None


def verify_artifact(primary: Path) -> str:
    """Check every file of the artifact whose primary file is ``primary``.

    Against the manifest.json that lists it when there is one, else against its sidecar's
    ``"files"``. Returns what it checked against ("manifest.json", the sidecar's name, or "" when
    neither records hashes: an ONNX file outside an export folder, an older sidecar); raises
    ZooError naming the first file that does not match."""
    primary = Path(primary)
    found = manifest_entry(primary)
    if found is not None:
        folder, art = found
        source = str(folder / MANIFEST)
        for f in art.files:
            problem = file_mismatch(folder / f.path, f.sha256, f.bytes, source)
            if problem:
                raise ZooError(problem)
        return MANIFEST
    side = sidecar_path(primary)
    entries = _sidecar_entries(side, primary) if side.is_file() else None
    if entries is not None:
        for full, sha, size in entries:
            problem = file_mismatch(full, sha, size, f"its sidecar {side.name}")
            if problem:
                raise ZooError(problem)
        return side.name
    bad = unreadable_manifests(primary)
    if bad:
        raise ZooError(f"cannot verify {primary}: {bad[0]} ({NO_VERIFY_HINT})")
    return ""


# --------------------------------------------------------------------------- outputs

CORRUPT, MISMATCH = "corrupt", "mismatch"


def output_problem(out: dict, meta: ArtifactMeta, check_head: bool = True) -> tuple[str, str] | None:
    """Whether canonical outputs ``out`` (from any input) can come from the artifact ``meta`` describes:
    None, or ``(kind, what)`` with kind CORRUPT (values no model of the family gives) or MISMATCH
    (a model, but not the one the metadata describes; only with ``check_head``).

    Shapes are already checked by the runner (prior count, classes). Here: values are finite, score
    rows are softmaxed, the boxes are those of the declared head — decoded corners lie around
    their priors; raw offsets do not look like corners in [0, 1] (measured on every target,
    fp32 and int8: a head read as the other one is off by two orders of magnitude) — and no box is
    absurd (weights that do not fit the network)."""
    if meta.head == "nms":
        dets = out.get("detections") or []
        if any(not np.isfinite(np.asarray(d)).all() for d in dets):
            return CORRUPT, "its detections contain NaN/inf"
        return None
    scores, boxes = np.asarray(out["scores"], np.float32), np.asarray(out["boxes"], np.float32)
    if not (np.isfinite(scores).all() and np.isfinite(boxes).all()):
        return CORRUPT, "its outputs contain NaN/inf"
    soft = softmax_problem(scores, base_precision(meta.precision or "fp32"))
    if check_head and soft:
        return MISMATCH, f"its scores are not softmaxed over {meta.num_classes} classes ({soft})"
    priors = P.generate_priors(*meta.input_size)
    b = boxes.reshape(-1, priors.shape[0], 4).astype(np.float64)
    centre, size = (b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]
    off = np.abs(centre - priors[None, :, :2]) / np.maximum(priors[None, :, 2:], 1e-6)  # in prior sizes
    if not check_head:
        pass
    elif meta.head == "raw":
        loc = np.asarray(out["locations"], np.float32).reshape(-1, 4)
        corner = ((loc >= -0.01) & (loc <= 1.01)).all(-1) & (loc[:, 2] >= loc[:, 0]) & (loc[:, 3] >= loc[:, 1])
        if corner.mean() > 0.5:
            return MISMATCH, "its box output holds decoded corners, but its metadata says the head is raw"
    elif np.median(off) > 1.0 or (size > 0).all(-1).mean() < 0.5:
        return MISMATCH, "its box output is not decoded corners around the priors, but its metadata says the head is decoded"
    # Measured on every target (fp32, int8; zeros and noise input): boxes stay within 0.5 prior sizes
    # of their prior and within e^2 of its size. Weights that do not fit the network (a companion
    # file of another model: ncnn reads it without complaint) give some boxes 15 prior sizes off and
    # e^27 times too big.
    scale = np.abs(np.log(np.maximum(size, 1e-12) / np.maximum(priors[None, :, 2:], 1e-6)))
    if off.max() > 10 or scale.max() > 10:
        return CORRUPT, (f"its boxes are absurd (up to {off.max():.0f} prior sizes off their prior, or e^{scale.max():.0f} "
                         f"times its size): the weights do not fit the network (a companion file of another model?)")
    return None
