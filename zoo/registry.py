"""The model registry, and resolution of a model (registry id or user checkpoint) into weights."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from zoo.errors import ZooError

ARCHES = ("slim", "rfb")
HEADS = ("decoded", "raw")


@dataclass(frozen=True)
class ModelSpec:
    id: str
    arch: str
    input_size: tuple[int, int]  # (W, H)
    labels: tuple[str, ...]
    checkpoint: str | None  # name in checkpoints/manifest.toml

    @property
    def num_classes(self) -> int:
        return len(self.labels)


FACE = ("BACKGROUND", "face")

MODELS: dict[str, ModelSpec] = {
    s.id: s
    for s in (
        ModelSpec("slim-320", "slim", (320, 240), FACE, "version-slim-320.pth"),
        ModelSpec("rfb-320", "rfb", (320, 240), FACE, "version-RFB-320.pth"),
        ModelSpec("slim-640", "slim", (640, 480), FACE, "version-slim-640.pth"),
        ModelSpec("rfb-640", "rfb", (640, 480), FACE, "version-RFB-640.pth"),
    )
}

MAX_SIDE = 8192


def nearest(name: str, choices) -> str:
    """' (did you mean X?)' or '' — a suggestion, never a silent replacement."""
    close = difflib.get_close_matches(name.lower(), list(choices), n=1, cutoff=0.4)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get_spec(model_id: str) -> ModelSpec:
    if model_id in MODELS:
        return MODELS[model_id]
    raise ZooError(f"unknown model {model_id!r}{nearest(model_id, MODELS)}; known: {', '.join(MODELS)}")


def parse_input_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text or "")
    if not m:
        raise ZooError(f"bad --input-size {text!r}: expected WxH with positive integers, e.g. 320x240")
    w, h = int(m.group(1)), int(m.group(2))
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise ZooError(f"bad --input-size {text!r}: width and height must be between 1 and {MAX_SIDE}")
    return w, h


def parse_labels(text: str) -> tuple[str, ...]:
    labels = tuple(s.strip() for s in text.split(",") if s.strip())
    if len(labels) < 2:
        raise ZooError(f"bad --labels {text!r}: give at least two comma-separated labels, background first")
    return labels


@dataclass
class ResolvedModel:
    """A model spec with its verified weights, ready to build networks."""

    spec: ModelSpec
    checkpoint_path: Path
    checkpoint_sha256: str
    state_dict: dict

    def build(self, head: str = "decoded", input_size: tuple[int, int] | None = None):
        from zoo.nets import UltraFace, load_state_dict_strict

        w, h = input_size or self.spec.input_size
        net = UltraFace(self.spec.arch, self.spec.num_classes, w, h, head=head)
        load_state_dict_strict(net, self.state_dict, source=str(self.checkpoint_path.name))
        return net.eval()

    def describe(self) -> dict:
        return {
            "id": self.spec.id,
            "arch": self.spec.arch,
            "input_size": list(self.spec.input_size),
            "labels": list(self.spec.labels),
            "checkpoint_sha256": self.checkpoint_sha256,
        }


def resolve_model(
    model_id: str | None = None,
    checkpoint: str | Path | None = None,
    arch: str | None = None,
    labels: tuple[str, ...] | None = None,
    input_size: tuple[int, int] | None = None,
) -> ResolvedModel:
    """``--model ID`` or ``--checkpoint PATH --arch A [--labels ...]``, plus an optional input size."""
    from checkpoints import loader
    from zoo.nets import infer_arch, infer_num_classes

    if model_id and checkpoint:
        raise ZooError("give either --model or --checkpoint, not both")
    if model_id:
        spec = get_spec(model_id)
        entry = loader.manifest()[spec.checkpoint]
        path = loader.resolve(entry)
        sha = entry.sha256
        sd = loader.load_state_dict(path)
        if labels:
            spec = replace(spec, labels=labels)
    elif checkpoint:
        if not arch:
            raise ZooError(f"--checkpoint needs --arch ({'|'.join(ARCHES)})")
        if arch not in ARCHES:
            raise ZooError(f"unknown --arch {arch!r}{nearest(arch, ARCHES)}; known: {', '.join(ARCHES)}")
        path = Path(checkpoint).expanduser()
        sd = loader.load_state_dict(path)
        sha = loader.sha256_file(path)
        found = infer_arch(sd)
        if found is None:
            raise ZooError(f"{path}: not an UltraFace checkpoint (no slim or RFB layer-7 keys)")
        if found != arch:
            raise ZooError(f"{path}: this checkpoint is a {found!r} model, not {arch!r}; use --arch {found}")
        k = infer_num_classes(sd)
        if labels is None:
            labels = FACE if k == 2 else ("BACKGROUND",) + tuple(f"class{i}" for i in range(1, k))
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem)
        spec = ModelSpec(f"custom-{arch}-{stem}", arch, (320, 240), tuple(labels), None)
    else:
        raise ZooError("give a model: --model ID (see `zoo list`) or --checkpoint PATH --arch slim|rfb")
    k = infer_num_classes(sd)
    if len(spec.labels) != k:
        raise ZooError(
            f"--labels has {len(spec.labels)} labels ({','.join(spec.labels)}) but the checkpoint has {k} classes"
        )
    if input_size:
        spec = replace(spec, input_size=tuple(input_size))
    return ResolvedModel(spec, path, sha, sd)
