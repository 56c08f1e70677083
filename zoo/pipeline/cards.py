"""Model cards: one Markdown page per model of a release (input, outputs, labels, checkpoint, artifacts)."""
from __future__ import annotations

from pathlib import Path

from zoo.checkpoints import loader
from zoo.checkpoints.resolve import ResolvedModel
from zoo.exporters import target_names
from zoo.validation.compat import COMPAT_FILE, card_section, read_compat
from zoo.core.errors import ZooError, nearest
from zoo.core.fsutil import atomic_write_text
from zoo.core.manifest import Artifact, file_problem, read_manifest, sort_key
from zoo.core.model.priors import prior_count

CARDS = "cards"


def write_card(out: Path, resolved: ResolvedModel, artifacts: list[Artifact]) -> str:
    s = resolved.spec
    c = loader.manifest().get(s.checkpoint) if s.checkpoint else None
    w, h = s.input_size
    lines = [
        f"# {s.id}: UltraFace {s.arch.upper() if s.arch == 'rfb' else s.arch} face detector, {w}x{h}",
        "",
        "Ultra-light face detector (~1 MB) of the UltraFace family, exported and proven by ultraface-zoo.",
        "",
        "## Input",
        f"- one image, resized whole to {w}x{h} (aspect ratio not kept), RGB, `(pixel - 127) / 128`",
        "- layout NCHW, except artifacts marked NHWC (TFLite), float32 unless the artifact's IO is int8",
        "",
        "## Outputs",
        f"- `scores` (1, {prior_count(w, h)}, {s.num_classes}): softmax over the labels",
        "- `boxes` (1, P, 4): `decoded` head: corners x1, y1, x2, y2 in [0, 1]; `raw` head: offsets for the host to decode",
        "  with the priors (centre variance 0.1, size variance 0.2), as the original shipped for MNN, ncnn and TFLite",
        "- post-processing: per-class score > 0.7, best 200 candidates, hard NMS at IoU 0.3, boxes scaled to the image",
        "",
        f"## Labels\n{', '.join(s.labels)}",
        "",
        "## Checkpoint",
        f"- sha256 `{resolved.checkpoint_sha256}`",
    ]
    if c:
        lines += [f"- `{c.name}`, {c.bytes} bytes, {c.params} parameters, trained at {c.train_size[0]}x{c.train_size[1]}",
                  f"- source: {c.url}", f"- licence: {c.licence}"]
        if c.widerface_ap:
            ap = c.widerface_ap
            lines += ["", "## Published accuracy (the original's README, WIDER FACE val, single scale)",
                      "", "| easy | medium | hard |", "|---|---|---|", f"| {ap['easy']} | {ap['medium']} | {ap['hard']} |"]
    lines += ["", "## Artifacts", "", "| target | precision | head | layout | file | bytes | parity |", "|---|---|---|---|---|---|---|"]
    order = target_names()
    for a in sorted(artifacts, key=lambda a: sort_key(a.key, order)):
        lines.append(f"| {a.target} | {a.precision} | {a.head} | {a.layout} | `{a.primary}` | {a.size} | "
                     f"{'pass' if (a.parity or {}).get('passed') else 'FAIL'} |")
    rel = f"{CARDS}/{s.id}.md"
    atomic_write_text(out / rel, "\n".join(lines) + "\n")
    return rel


def card_view(folder: Path, model: str) -> str:
    """A release's card of ``model`` (checked against its sha256 in the manifest) with a "Runtime
    compatibility" section appended from the release's compat.json (`zoo compat`). The card in the
    release is not changed: cards are hashed, byte-reproducible content, compatibility results are not."""
    folder = Path(folder)
    m = read_manifest(folder)
    if not m.is_release:
        raise ZooError(f"{folder} is not a release folder: model cards are written by `zoo release`")
    models = list(m.release.get("models", []))
    if model not in models:
        raise ZooError(f"model {model!r} is not in {folder.name}{nearest(model, models)}; it has: {', '.join(models)}")
    rel = f"{CARDS}/{model}.md"
    entry = next((f for f in m.files if f.path == rel), None)
    if entry is None:
        raise ZooError(f"{folder.name} lists no card {rel}")
    problem = file_problem(folder, entry)
    if problem:
        raise ZooError(f"{folder.name}: {problem}; the release does not verify (`zoo verify {folder.name}`)")
    card = (folder / rel).read_text(encoding="utf-8")
    doc, cproblem = read_compat(folder / COMPAT_FILE) if (folder / COMPAT_FILE).is_file() else (None, None)
    current = {a.primary: (a.file(a.primary).sha256 if a.file(a.primary) else None) for a in m.artifacts}
    return card.rstrip("\n") + "\n\n" + "\n".join(card_section(doc, cproblem, model, current)).rstrip("\n") + "\n"
