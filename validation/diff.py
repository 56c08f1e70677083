"""`zoo diff`: an artifact against PyTorch, layer by layer.

The artifact runs in its own runtime with every intermediate tensor exposed (the target's `Tap`,
beside its runner), the PyTorch model with forward hooks, on the same preprocessed images. Each
runtime tensor is mapped to the PyTorch module whose output it is (zoo.core.model.layers: names
the file carries or the mapping its metadata recorded at export; a fused group compares at its last
module); one that cannot be mapped is listed with ``torch`` null, never dropped.

Per mapped layer, in PyTorch's execution order: max and mean absolute error, relative L2 error,
cosine similarity (over every image), and whether the layer is over tolerance.

Tolerance (per layer, on the max absolute error, relative to the reference tensor's peak |value|,
the form of zoo.validation.parity's tiers): over when ``max_abs > atol + rtol * peak``, with (atol,
rtol) by the artifact's precision tier (`LAYER_TOLERANCE`); ``--atol A`` makes it ``max_abs > A``.
fp32 uses the fp32 parity tier's 1e-4 / 1e-4 (fp32 runtimes measure ~1e-6 relative per layer).
fp16 uses 2e-2 / 2e-2, the fp16 parity tier's 2e-2 (float16 carries 11 significant bits, ~5e-4
relative per rounding; measured on rfb-320 and slim-320, every fp16 layer within 1.2% relative L2,
the largest single-element errors, ~0.085, in the box-regression heads, which the 1e-2 / 1e-2 first
tried flagged in artifacts that pass parity). int8 uses 0.05 / 0.05: one uint8 activation step is 1/255 of a
tensor's range, so a layer within 5% of its peak holds a few steps of error; beyond that the int8
error has built up (which is what the table is for: where it enters and where it grows).

``first_divergent``: the first layer over tolerance. ``largest_growth``: the layer whose relative
L2 error grows most over that of the mapped layer feeding it (its nearest mapped producer in the
PyTorch graph, else the previous row), the input's error floored at the tier's ``floor`` so that
noise-level errors do not make ratios; null when no layer is over tolerance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.exporters import get_target
from zoo.core.errors import ZooError
from zoo.core.manifest import base_precision
from zoo.core.meta import read_meta
from zoo.core.model.layers import ErrorStats, capture, model_layers

#: per-layer tolerance by precision tier: over when max_abs > atol + rtol * peak|ref| (see the module docstring);
#: ``floor``: the smallest input error a growth ratio divides by
LAYER_TOLERANCE = {
    "fp32": {"atol": 1e-4, "rtol": 1e-4, "floor": 1e-5},
    "fp16": {"atol": 2e-2, "rtol": 2e-2, "floor": 1e-3},
    "int8": {"atol": 5e-2, "rtol": 5e-2, "floor": 1e-2},
}


def tolerance(precision: str, atol: float | None = None) -> dict:
    tier = dict(LAYER_TOLERANCE[base_precision(precision)])
    if atol is not None:
        if not (atol >= 0):
            raise ZooError(f"--atol must be a non-negative number, got {atol}")
        tier.update(atol=float(atol), rtol=0.0)
    return tier


@dataclass
class Reference:
    """The PyTorch model an artifact is compared with, and its layers."""

    model: object
    layers: object


def reference(meta, state_dict, x) -> Reference:
    import torch  # heavy

    from zoo.core.model.nets import UltraFace, load_state_dict_strict  # heavy: torch

    torch.set_num_threads(1)
    head = "decoded" if meta.head == "nms" else meta.head  # an end-to-end graph is the decoded one + NMS
    net = UltraFace(meta.arch, meta.num_classes, *meta.input_size, head=head)
    load_state_dict_strict(net, state_dict)
    net.eval()
    return Reference(net, model_layers(net, x[:1]))


def open_tap(primary: Path, runtime: str | None = None, threads: int = 1):
    """(metadata, the artifact's `Tap`, not loaded yet): every refusal (unknown target, runtime not
    installed, a runtime without a tap, metadata without the mapping) before any work."""
    meta = read_meta(Path(primary))
    target = get_target(meta.target)
    target.require()
    return meta, target.tap(Path(primary), meta, threads=threads, runtime=runtime)


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def diff_artifact(primary: Path, x: np.ndarray, state_dict, runtime: str | None = None, threads: int = 1,
                  atol: float | None = None, ref: Reference | None = None, opened=None) -> dict:
    """The layer-by-layer comparison of one artifact on the preprocessed batch ``x`` (N, 3, H, W);
    ``opened``: what `open_tap` returned for it."""
    primary = Path(primary)
    meta, tap = opened or open_tap(primary, runtime, threads)
    if tuple(x.shape[2:]) != (meta.input_size[1], meta.input_size[0]):
        raise ZooError(f"{primary}: images were prepared at {x.shape[3]}x{x.shape[2]}, the artifact takes "
                       f"{meta.input_size[0]}x{meta.input_size[1]}")
    ref = ref or reference(meta, state_dict, x)
    layers = ref.layers
    tol = tolerance(meta.precision, atol)
    rows: list[dict] = []  # runtime order: {"runtime", "torch", "shape", "stats"}
    with tap:
        for i in range(x.shape[0]):
            pairs = tap.tensors(x[i:i + 1])
            if i == 0:
                for name, a in pairs:
                    module = layers.resolve(tap.origin(name))
                    why = None
                    if module is None:
                        why = "no PyTorch module"
                    elif tuple(a.shape[1:]) != tuple(layers.shapes[module][1:]):
                        why = f"shape {list(a.shape)} is not {module}'s {list(layers.shapes[module])}"
                        module = None
                    rows.append({"runtime": name, "torch": module, "shape": list(a.shape), "why": why,
                                 "stats": ErrorStats() if module else None})
                index = {r["runtime"]: r for r in rows}
            got = dict(pairs)
            if set(got) != set(index):
                raise ZooError(f"{tap.name} exposed different tensors for image {i + 1} than for image 1")
            want = {r["torch"] for r in rows if r["torch"]}
            want_ref = capture(ref.model, x[i:i + 1], want)
            for r in rows:
                if r["torch"]:
                    r["stats"].add(want_ref[r["torch"]], got[r["runtime"]])
    mapped = sorted((r for r in rows if r["torch"]), key=lambda r: layers.index[r["torch"]])
    if not mapped:
        raise ZooError(f"{primary}: none of the {len(rows)} tensors {tap.name} exposed maps to a PyTorch module")
    out_layers = []
    for r in mapped:
        st = r["stats"]
        m = st.result()
        limit = tol["atol"] + tol["rtol"] * st.ref_peak
        over = not math.isfinite(m["max_abs"]) or m["max_abs"] > limit
        m = {k: _finite(v) for k, v in m.items()}  # NaN/inf from the runtime: null (and over), valid JSON
        out_layers.append({"torch": r["torch"], "runtime": r["runtime"], "shape": r["shape"], **m, "over": bool(over)})
    first = next((l["torch"] for l in out_layers if l["over"]), None)
    growth = _growth(out_layers, layers, tol["floor"])
    largest = out_layers[int(np.argmax(growth))]["torch"] if first is not None else None
    unmapped = [{"torch": None, "runtime": r["runtime"], "shape": r["shape"], "max_abs": None, "mean_abs": None,
                 "rel_l2": None, "cosine": None, "over": False} for r in rows if not r["torch"]]
    result = {"artifact": str(primary), "runtime": tap.name, "images": int(x.shape[0]), "layers": out_layers + unmapped,
              "first_divergent": first, "largest_growth": largest}
    # for the text table (not part of the JSON form): growth per mapped row, tolerance, why a tensor is unmapped
    extra = {"precision": meta.precision, "tolerance": tol, "growth": growth,
             "unmapped_why": {r["runtime"]: r["why"] for r in rows if not r["torch"]}}
    return {"result": result, "extra": extra}


def _growth(rows: list[dict], layers, floor: float) -> list[float]:
    """Per row: its rel_l2 / the rel_l2 of the mapped layer feeding it (its nearest mapped producer in
    the PyTorch graph, else the previous row), the latter floored at ``floor``. A module some runtime
    exposes twice (a float output and its requantized copy) is fed by its first row."""
    first_row: dict[str, dict] = {}
    for r in rows:
        first_row.setdefault(r["torch"], r)
    out = []
    prev = None
    for r in rows:
        src = layers.feeding(r["torch"], set(first_row) - {r["torch"]})
        base_row = first_row[src] if src is not None and layers.index[src] < layers.index[r["torch"]] else prev
        base = base_row["rel_l2"] if base_row is not None else 0.0
        rel = r["rel_l2"] if r["rel_l2"] is not None else math.inf
        out.append(float(rel / max(base if base is not None else math.inf, floor)))
        prev = r
    return out


def worst(result: dict, n: int = 3) -> list[dict]:
    """The ``n`` mapped layers with the largest relative L2 error."""
    rows = [l for l in result["layers"] if l["torch"]]
    return sorted(rows, key=lambda l: -(l["rel_l2"] if l["rel_l2"] is not None else math.inf))[:n]


def diff(primaries: list[Path], images: list[Path], checkpoint: Path | None = None, runtime: str | None = None,
         threads: int = 1, atol: float | None = None, progress=None) -> list[dict]:
    """`diff_artifact` for each artifact (the PyTorch reference built once per model and head)."""
    from zoo.checkpoints.loader import load_state_dict  # heavy (torch): only when the comparison runs
    from zoo.checkpoints.resolve import find_checkpoint  # heavy (torch), as above
    from zoo.core.images import load_batch  # heavy (OpenCV), as above

    say = progress or (lambda msg: None)
    opened = [open_tap(Path(p), runtime, threads) for p in primaries]  # every refusal before any work
    metas = [m for m, _ in opened]
    states: dict[str, dict] = {}
    batches: dict[tuple, np.ndarray] = {}
    refs: dict[tuple, Reference] = {}
    out = []
    for p, m, o in zip(primaries, metas, opened):
        sha = m.checkpoint_sha256
        if sha not in states:
            states[sha] = load_state_dict(find_checkpoint(sha, checkpoint), sha)
        size = tuple(m.input_size)
        if size not in batches:
            batches[size], _, _ = load_batch(images, *size)
        key = (sha, m.arch, m.num_classes, size, m.head)
        if key not in refs:
            refs[key] = reference(m, states[sha], batches[size])
        say(f"diff {p} ...")
        out.append(diff_artifact(Path(p), batches[size], states[sha], runtime=runtime, threads=threads, atol=atol,
                                 ref=refs[key], opened=o))
    return out
