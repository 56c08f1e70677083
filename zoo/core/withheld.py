"""Flavours withheld from the default release matrix: measured to fail their tier, still buildable on request.

An int8 flavour whose verdict FAILs the tiers (the pinned photos, the strict rule, the shift gate: issue 29)
with today's converters is not offered by default: `zoo release` leaves it out of its matrix and says so, and
`zoo list` lists it with the measured reason. ``zoo release --with-withheld`` builds it anyway (its verdict then
FAILs honestly, exit 2), and ``zoo export`` builds what it is asked for (a FAIL points to the flavour that
holds where the target has one).

The list is data (``data/withheld.toml``), one entry per (model, target, flavour): the measured reason, the
flavour to use instead, and the toolchain it was measured with. It is not a guess: each entry is the
recorded verdict of ``zoo check`` on that flavour (docs/releases.md, "Withheld flavours"), and is removed when a
change makes the flavour pass.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from zoo.core.errors import ZooError

WITHHELD_FILE = Path(__file__).with_name("data") / "withheld.toml"
_KEYS = {"model", "target", "precision", "reason", "instead", "measured"}


@dataclass(frozen=True)
class Withheld:
    model: str
    target: str
    precision: str  # the flavour: int8, int8-weight, int8-io, ...
    reason: str  # the measured verdict that fails
    instead: str  # what to use instead (a flavour of the same target, or another target)
    measured: str  # the toolchain and command it was measured with

    @property
    def label(self) -> str:
        return f"{self.model} {self.target}/{self.precision}"

    def line(self) -> str:
        return f"withheld: {self.label}: {self.reason}; use {self.instead} (measured with {self.measured})"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("model", "target", "precision", "reason", "instead", "measured")}


def parse(text: str, where: str) -> tuple[Withheld, ...]:
    """The entries of a withheld list (TOML: ``[[withheld]]`` tables with exactly the keys of `Withheld`)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ZooError(f"{where}: not valid TOML ({e})") from None
    rows = doc.get("withheld", [])
    if set(doc) - {"withheld"} or not isinstance(rows, list):
        raise ZooError(f"{where}: expected only [[withheld]] tables")
    out, seen = [], set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != _KEYS or not all(isinstance(v, str) and v.strip() for v in row.values()):
            raise ZooError(f"{where}: entry {i + 1} must have exactly the non-empty text keys {', '.join(sorted(_KEYS))}")
        w = Withheld(**row)
        if (w.model, w.target, w.precision) in seen:
            raise ZooError(f"{where}: entry {i + 1} repeats {w.label}")
        seen.add((w.model, w.target, w.precision))
        out.append(w)
    return tuple(out)


@lru_cache(maxsize=1)
def withheld() -> tuple[Withheld, ...]:
    """The shipped list (``data/withheld.toml``)."""
    try:
        text = WITHHELD_FILE.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read {WITHHELD_FILE}: {e}; reinstall ultraface-zoo") from None
    return parse(text, str(WITHHELD_FILE))


def withheld_for(model: str, target: str, precision: str, entries=None) -> Withheld | None:
    """The entry withholding this flavour from the default matrix, or None."""
    for w in withheld() if entries is None else entries:
        if (w.model, w.target, w.precision) == (model, target, precision):
            return w
    return None
