"""The I/O contract of each artifact format: what an app built on the original project's file of that
format reads (tensor names, their order, layout and shapes per head, the value each output holds, the
pre-processing), and where our file differs on purpose, with what the app must change.

Defined once, in ``zoo/core/data/io_contract.toml``; the exporters take their public names from it
(``io_contract("ncnn").input.name``), docs/dropin.md's per-format table says the same, and
``tests/targets/test_io_contract.py`` holds both the original's files and ours to it.

    c = io_contract("tflite")
    c.input.name, c.input.resolve(320, 240, 2)      # 'input', (1, 240, 320, 3)
    [o.name for o in c.outputs]                      # ['boxes', 'scores'] (in the file's order)
    c.original                                       # the original file's own names, where they differ
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from zoo.core.errors import ZooError
from zoo.core.model import priors as P

CONTRACT_PATH = Path(__file__).parent / "data" / "io_contract.toml"

#: the symbols a shape may use besides integers: batch, height, width, priors, classes
SYMBOLS = ("N", "H", "W", "P", "K")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints and SYMBOLS
    role: str = ""  # "scores" / "boxes" for an output (the original's tflite names them otherwise)

    def resolve(self, width: int, height: int, num_classes: int, batch: int = 1) -> tuple[int, ...]:
        """The shape at that input size: N batch, H/W the size, P its prior count, K the classes."""
        env = {"N": batch, "H": height, "W": width, "P": P.prior_count(width, height), "K": num_classes}
        return tuple(env[d] if isinstance(d, str) else int(d) for d in self.shape)


@dataclass(frozen=True)
class Side:
    """One file's inputs and outputs as an app sees them."""

    input: TensorSpec
    outputs: tuple[TensorSpec, ...]

    def output(self, role: str) -> TensorSpec:
        return next(o for o in self.outputs if o.role == role)

    def resolved(self, width: int, height: int, num_classes: int, batch: int = 1) -> "Side":
        """The same side with the shapes of that input size."""
        def fix(t: TensorSpec) -> TensorSpec:
            return TensorSpec(t.name, t.resolve(width, height, num_classes, batch), t.role)

        return Side(fix(self.input), tuple(fix(o) for o in self.outputs))


@dataclass(frozen=True)
class Difference:
    what: str  # a key of DIFFERENCE_KEYS
    detail: str  # ours against the original's
    app_change: str  # what an app built on the original changes to run ours
    precisions: tuple[str, ...] = ()  # only these precisions differ so (empty: every one)

    def applies(self, precision: str) -> bool:
        return not self.precisions or precision in self.precisions


#: what a difference may concern
DIFFERENCE_KEYS = ("input name", "output names", "output order", "shapes", "dtypes")


@dataclass(frozen=True)
class FormatContract:
    target: str
    layout: str
    ordered: bool  # apps may read the outputs by position: their order is part of the contract
    ours: Side
    original: Side  # the original's file (equal to ``ours`` where we match it)
    references: dict  # head -> files of the original's, relative to upstream/reference in the shared material
    differences: tuple[Difference, ...]
    how_apps_read: str

    @property
    def input(self) -> TensorSpec:
        return self.ours.input

    def differences_for(self, precision: str) -> list[Difference]:
        return [d for d in self.differences if d.applies(precision)]

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.ours.outputs


@dataclass(frozen=True)
class Preprocessing:
    mean: float
    scale: float  # x = (pixel - mean) * scale
    color: str
    resize: str


@dataclass(frozen=True)
class HeadValues:
    """What each output of a head holds (checked on real outputs)."""

    head: str
    scores: str
    boxes: str
    boxes_kind: str  # "offsets" (the app decodes with the priors) or "corners" (x1, y1, x2, y2 in [0, 1])


@dataclass(frozen=True)
class Contract:
    preprocessing: Preprocessing
    heads: dict  # head -> HeadValues
    formats: dict  # target -> FormatContract


def _tensor(d, where: str, role: str | None = None) -> TensorSpec:
    try:
        shape = tuple(d["shape"])
        if not all((isinstance(v, int) and v > 0) or v in SYMBOLS for v in shape):
            raise ValueError(f"shape {shape}")
        return TensorSpec(str(d["name"]), shape, role or str(d.get("role", d["name"])))
    except (KeyError, TypeError, ValueError) as e:
        raise ZooError(f"{CONTRACT_PATH.name}: malformed tensor in {where}: {e}") from None


def _side(d, where: str) -> Side:
    outs = tuple(_tensor(o, f"{where}.outputs") for o in d["outputs"])
    if sorted(o.role for o in outs) != ["boxes", "scores"]:
        raise ZooError(f"{CONTRACT_PATH.name}: {where} must have one 'scores' and one 'boxes' output")
    return Side(_tensor(d["input"], f"{where}.input", role="input"), outs)


def parse(text: str) -> Contract:
    try:
        data = tomllib.loads(text)
        pre = data["preprocessing"]
        preprocessing = Preprocessing(float(pre["mean"]), float(pre["scale"]), str(pre["color"]), str(pre["resize"]))
        heads = {h: HeadValues(h, str(v["scores"]), str(v["boxes"]), str(v["boxes_kind"]))
                 for h, v in data["heads"].items()}
        formats = {}
        for target, f in data["format"].items():
            ours = _side(f, f"format.{target}")
            original = _side(f["original"], f"format.{target}.original") if "original" in f else ours
            diffs = tuple(Difference(str(x["what"]), str(x["detail"]), str(x["app_change"]),
                                     tuple(str(p) for p in x.get("precisions", ())))
                          for x in f.get("difference", []))
            bad = [x.what for x in diffs if x.what not in DIFFERENCE_KEYS]
            if bad:
                raise ZooError(f"{CONTRACT_PATH.name}: format.{target}: unknown difference {bad}")
            refs = {h: tuple(v) for h, v in f.get("reference", {}).items()}
            formats[target] = FormatContract(target, str(f["layout"]), bool(f["ordered"]), ours, original, refs,
                                             diffs, str(f["how_apps_read"]))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise ZooError(f"{CONTRACT_PATH.name} is malformed: {e}") from None
    return Contract(preprocessing, heads, formats)


@lru_cache(maxsize=1)
def contract() -> Contract:
    return parse(CONTRACT_PATH.read_text(encoding="utf-8"))


def io_contract(target: str) -> FormatContract:
    """The contract of one format (ZooError for a format the original ships no file of)."""
    formats = contract().formats
    if target not in formats:
        raise ZooError(f"no I/O contract for {target!r}: the original ships files of {', '.join(formats)} only")
    return formats[target]


def differences(ours: Side, original: Side, ordered: bool) -> list[str]:
    """Which DIFFERENCE_KEYS two sides differ in (shapes as given: both symbolic, or both resolved)."""
    out = []
    if ours.input.name != original.input.name:
        out.append("input name")
    by_role = {o.role: o for o in original.outputs}
    if any(o.name != by_role[o.role].name for o in ours.outputs):
        out.append("output names")
    if ordered and [o.role for o in ours.outputs] != [o.role for o in original.outputs]:
        out.append("output order")
    if ours.input.shape != original.input.shape or any(o.shape != by_role[o.role].shape for o in ours.outputs):
        out.append("shapes")
    return out
