"""Artifact metadata: what a runtime needs to know to run an artifact like the PyTorch model.

Embedded where the format allows it (ONNX metadata_props), otherwise in a JSON
sidecar ``<primary>.json`` beside the primary file, and always in the
manifest of the folder.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zoo.core.version import __version__
from zoo.core.errors import ZooError
from zoo.core.manifest import MANIFEST, read_manifest
from zoo.core.model import priors as P
from zoo.core.model import processing


@dataclass
class ArtifactMeta:
    model_id: str
    arch: str
    input_size: tuple[int, int]
    labels: tuple[str, ...]
    head: str
    checkpoint_sha256: str
    target: str = "pytorch"
    precision: str = "fp32"
    layout: str = "NCHW"
    mean: float = processing.MEAN
    std: float = processing.STD
    color: str = "RGB"
    variances: tuple[float, float] = (P.CENTER_VARIANCE, P.SIZE_VARIANCE)
    prior_count: int = 0
    zoo_version: str = __version__
    io: dict = field(default_factory=dict)  # target-specific: blob names, quantisation parameters
    #: a dynamic artifact (batch, height and width free at run time): priors.dynamic_info() plus the
    #: sizes its parity proved ("tested_sizes"); empty for a fixed-size artifact (and then not written,
    #: so fixed-size files stay byte for byte what they were)
    dynamic: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input_size = tuple(int(v) for v in self.input_size)
        self.labels = tuple(self.labels)
        self.variances = tuple(self.variances)
        if not self.prior_count:
            self.prior_count = P.prior_count(*self.input_size)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def is_dynamic(self) -> bool:
        return bool(self.dynamic)

    def size_for(self, width: int, height: int) -> None:
        """Refuse running at ``width`` x ``height`` unless this artifact can (its own size, or any size
        within the network's constraint for a dynamic artifact)."""
        if (width, height) == tuple(self.input_size):
            return
        if not self.is_dynamic:
            raise ZooError(f"this {self.model_id} artifact is fixed at {self.input_size[0]}x{self.input_size[1]}, "
                           f"not {width}x{height}: export it with --dynamic to run it at other sizes")
        problem = P.size_problem(width, height)
        if problem:
            raise ZooError(problem)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["dynamic"]:
            del d["dynamic"]
        d["input_size"] = list(self.input_size)
        d["labels"] = list(self.labels)
        d["variances"] = list(self.variances)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "ArtifactMeta":
        """Metadata from its JSON form (a file's, a sidecar's, a manifest's), checked field by field:
        whatever it holds, the result is a usable description or a ZooError saying what is wrong."""
        if not isinstance(d, dict):
            raise ZooError(f"artifact metadata must be a JSON object, got {type(d).__name__}")
        problem = meta_problem(d)
        if problem:
            raise ZooError(f"artifact metadata is malformed: {problem}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except (TypeError, ValueError) as e:
            raise ZooError(f"artifact metadata is incomplete or malformed: {e}") from None

    def with_(self, **kw) -> "ArtifactMeta":
        d = self.to_dict()
        if "input_size" in kw and "prior_count" not in kw:
            d.pop("prior_count")  # recomputed for the new size
        d.update(kw)
        return ArtifactMeta.from_dict(d)


HEADS = ("raw", "decoded", "nms")
MAX_SIDE = 8192  # pixels: far above any UltraFace input; bounds the priors a hostile file can ask for


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def meta_problem(d: dict) -> str | None:
    """What is wrong with a metadata dict (None: nothing). Missing required keys are left to the
    constructor's message; present keys must have the types and ranges a runner relies on."""
    for k in ("model_id", "arch", "head", "checkpoint_sha256", "target", "precision", "layout", "color", "zoo_version"):
        if k in d and not isinstance(d[k], str):
            return f"{k!r} must be text, got {type(d[k]).__name__}"
    if "head" in d and d["head"] not in HEADS:
        return f"head {str(d['head'])[:40]!r} is not one of {', '.join(HEADS)}"
    size = d.get("input_size")
    if "input_size" in d:
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size)):
            return f"input_size must be [width, height] (integers), got {str(size)[:60]}"
        if not all(1 <= v <= MAX_SIDE for v in size):
            return f"input_size {size[0]}x{size[1]} is out of range (1..{MAX_SIDE} per side)"
    if "labels" in d:
        labels = d["labels"]
        if not (isinstance(labels, (list, tuple)) and 2 <= len(labels) <= 1000 and all(isinstance(v, str) for v in labels)):
            return "labels must be a list of 2 to 1000 names (background first)"
    for k in ("mean", "std"):
        if k in d and not _is_num(d[k]):
            return f"{k!r} must be a finite number, got {str(d[k])[:40]}"
    if "std" in d and d["std"] == 0:
        return "'std' must not be 0"
    if "variances" in d:
        v = d["variances"]
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(x) and x > 0 for x in v)):
            return f"variances must be two positive numbers, got {str(v)[:60]}"
    if "prior_count" in d:
        pc = d["prior_count"]
        if not _is_int(pc) or pc < 0:
            return f"prior_count must be a non-negative integer, got {str(pc)[:40]}"
        if pc and "input_size" in d and pc != P.prior_count(*size):
            return (f"prior_count {pc} does not match input_size {size[0]}x{size[1]} "
                    f"(which has {P.prior_count(*size)} priors)")
    if "dynamic" in d and not isinstance(d["dynamic"], dict):
        return f"'dynamic' must be an object, got {type(d['dynamic']).__name__}"
    if "io" in d and not isinstance(d["io"], dict):
        return f"'io' must be an object, got {type(d['io']).__name__}"
    return None


#: primary-file suffixes of two parts: the sidecar of ``x.model.json`` (a TF.js graph model) is ``x.json``
COMPOUND_SUFFIXES = (".model.json",)


def artifact_stem(name: str) -> str:
    """A primary file's name without its suffix (``rfb-320-raw-fp32.model.json`` -> ``rfb-320-raw-fp32``)."""
    for suffix in COMPOUND_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name else name


def sidecar_path(primary: Path) -> Path:
    primary = Path(primary)
    return primary.with_name(artifact_stem(primary.name) + ".json")


def file_suffix(name: str) -> str:
    """A file name's suffix, compound ones included (``x.model.json`` -> ``.model.json``, ``x.bin`` -> ``.bin``)."""
    stem = artifact_stem(name)
    return name[len(stem):] if stem != name else ""


def companion(path: Path, suffix: str) -> Path:
    """The file beside ``path`` with the same stem and ``suffix`` (``x.model.json`` + ``.bin`` -> ``x.bin``)."""
    path = Path(path)
    return path.with_name(artifact_stem(path.name) + suffix)


MAX_SIDECAR_BYTES = 1 << 20  # a sidecar is a few hundred bytes; a bigger one is not ours


def _loads(text: str, what: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; deep nesting recurses
        raise ZooError(f"{what} is not valid JSON ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None


def _meta_from(d, what: str) -> ArtifactMeta:
    try:
        return ArtifactMeta.from_dict(d)
    except ZooError as e:
        raise ZooError(f"{what}: {e}") from None


def read_sidecar(side: Path) -> dict:
    """The sidecar's JSON object (metadata keys, plus ``files``), or a ZooError naming it."""
    try:
        if side.stat().st_size > MAX_SIDECAR_BYTES:
            raise ZooError(f"the metadata sidecar {side} is {side.stat().st_size} bytes: not a sidecar of ours")
        text = side.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read the metadata sidecar {side}: {getattr(e, 'strerror', None) or e}") from None
    d = _loads(text, f"the metadata sidecar {side}")
    if not isinstance(d, dict):
        raise ZooError(f"the metadata sidecar {side} is not a JSON object")
    return d


def manifest_entry(primary: Path, levels: int = 3):
    """``(folder, Artifact)`` of the nearest manifest.json above ``primary`` (up to ``levels``
    folders up) that lists it as an artifact's primary file, else None. A manifest that cannot be
    read is skipped here; ``unreadable_manifests`` names them."""
    primary = Path(primary)
    target = primary.resolve()
    for folder in list(primary.parents)[:levels]:
        if not (folder / MANIFEST).is_file():
            continue
        try:
            m = read_manifest(folder)
        except ZooError:
            continue
        for art in m.artifacts:
            if (folder / art.primary).resolve() == target:
                return folder, art
    return None


def unreadable_manifests(primary: Path, levels: int = 3) -> list[str]:
    """The problems of the manifest.json files above ``primary`` that cannot be read."""
    out = []
    for folder in list(Path(primary).parents)[:levels]:
        if (folder / MANIFEST).is_file():
            try:
                read_manifest(folder)
            except ZooError as e:
                out.append(str(e))
    return out


MAX_GRAPH_MODEL_JSON = 64 << 20  # a model.json of ours is ~70 kB


def _graph_model_meta(path: Path):
    """``userDefinedMetadata.ultraface_zoo`` of a TF.js model.json, or None; a ZooError when it cannot be read."""
    try:
        if path.stat().st_size > MAX_GRAPH_MODEL_JSON:
            raise ZooError(f"{path} is {path.stat().st_size} bytes: not a TF.js model.json of ours")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    doc = _loads(text, str(path))
    user = doc.get("userDefinedMetadata") if isinstance(doc, dict) else None
    return user.get("ultraface_zoo") if isinstance(user, dict) else None


def read_meta(primary: Path) -> ArtifactMeta:
    """Metadata of an artifact: embedded (ONNX), sidecar JSON, or the manifest above it.

    Whatever the files hold, the result is checked metadata or a ZooError naming the file."""
    primary = Path(primary)
    if not primary.exists():
        raise ZooError(f"artifact not found: {primary}")
    if not primary.is_file():
        raise ZooError(f"artifact {primary} is not a file: point at an artifact's primary file (e.g. a .onnx, .param or saved_model.pb)")
    if primary.suffix == ".onnx":
        import onnx  # heavy: only for ONNX files

        try:
            m = onnx.load(str(primary), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - any parse failure is a user-facing corrupt file
            msg = str(e).splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ZooError(f"cannot read ONNX file {primary}: {msg}") from None
        if not m.graph.node:
            raise ZooError(f"{primary} is not an ONNX model (empty, or no graph)")
        props = {p.key: p.value for p in m.metadata_props}
        if "zoo.meta" in props:
            what = f"the metadata embedded in {primary}"
            return _meta_from(_loads(props["zoo.meta"], what), what)
    side = sidecar_path(primary)
    if side.is_file():
        return _meta_from(read_sidecar(side), f"the metadata sidecar {side}")
    if primary.name.endswith(".model.json"):  # a TF.js graph model carries it in userDefinedMetadata
        embedded = _graph_model_meta(primary)
        if embedded is not None:
            what = f"the metadata in {primary} (userDefinedMetadata)"
            return _meta_from(embedded, what)
    found = manifest_entry(primary)
    if found and found[1].meta:
        return _meta_from(found[1].meta, f"the metadata of {found[1].primary} in {found[0] / MANIFEST}")
    bad = unreadable_manifests(primary)
    if bad:
        raise ZooError(bad[0])
    raise ZooError(
        f"no metadata for {primary}: expected embedded metadata, a sidecar {side.name}, or a manifest.json beside it"
    )
