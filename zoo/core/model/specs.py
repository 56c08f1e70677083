"""The model registry: ids, architectures, input sizes and labels of the family (facts only; weights live in `checkpoints`)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from zoo.core.errors import ZooError, nearest

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
