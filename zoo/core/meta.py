"""Artifact metadata: what a runtime needs to know to run an artifact like the PyTorch model.

Embedded where the format allows it (ONNX metadata_props), otherwise in a JSON
sidecar ``<primary>.json`` beside the primary file, and always in the
manifest of the folder.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zoo import __version__
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

    def __post_init__(self):
        self.input_size = tuple(int(v) for v in self.input_size)
        self.labels = tuple(self.labels)
        self.variances = tuple(self.variances)
        if not self.prior_count:
            self.prior_count = P.prior_count(*self.input_size)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["labels"] = list(self.labels)
        d["variances"] = list(self.variances)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "ArtifactMeta":
        if not isinstance(d, dict):
            raise ZooError(f"artifact metadata must be a JSON object, got {type(d).__name__}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except (TypeError, ValueError) as e:
            raise ZooError(f"artifact metadata is incomplete or malformed: {e}") from None

    def with_(self, **kw) -> "ArtifactMeta":
        d = self.to_dict()
        d.update(kw)
        return ArtifactMeta.from_dict(d)


def sidecar_path(primary: Path) -> Path:
    primary = Path(primary)
    return primary.with_name(primary.name.rsplit(".", 1)[0] + ".json") if "." in primary.name else primary.with_name(primary.name + ".json")


def read_meta(primary: Path) -> ArtifactMeta:
    """Metadata of an artifact: embedded (ONNX), sidecar JSON, or the manifest beside it."""
    primary = Path(primary)
    if not primary.exists():
        raise ZooError(f"artifact not found: {primary}")
    if primary.suffix == ".onnx":
        import onnx  # heavy: only for ONNX files

        try:
            m = onnx.load(str(primary), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - any parse failure is a user-facing corrupt file
            raise ZooError(f"cannot read ONNX file {primary}: {str(e).splitlines()[0][:160]}") from None
        props = {p.key: p.value for p in m.metadata_props}
        if "zoo.meta" in props:
            return ArtifactMeta.from_dict(json.loads(props["zoo.meta"]))
    side = sidecar_path(primary)
    if side.is_file():
        try:
            return ArtifactMeta.from_dict(json.loads(side.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
            raise ZooError(f"cannot read the metadata sidecar {side}: {e}") from None
    for folder in (primary.parent, primary.parent.parent):
        if (folder / MANIFEST).is_file():
            for art in read_manifest(folder).artifacts:
                if (folder / art.primary).resolve() == primary.resolve() and art.meta:
                    return ArtifactMeta.from_dict(art.meta)
    raise ZooError(
        f"no metadata for {primary}: expected embedded metadata, a sidecar {side.name}, or a manifest.json beside it"
    )
