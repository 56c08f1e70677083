"""Resolution of a model (registry id or user checkpoint) into verified weights, ready to build networks."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from zoo.checkpoints import loader
from zoo.core.errors import ZooError, nearest
from zoo.core.meta import ArtifactMeta
from zoo.core.model.specs import ARCHES, FACE, ModelSpec, get_spec


@dataclass
class ResolvedModel:
    """A model spec with its verified weights, ready to build networks."""

    spec: ModelSpec
    checkpoint_path: Path
    checkpoint_sha256: str
    state_dict: dict

    def build(self, head: str = "decoded", input_size: tuple[int, int] | None = None):
        from zoo.core.model.nets import UltraFace, load_state_dict_strict  # heavy: torch

        w, h = input_size or self.spec.input_size
        net = UltraFace(self.spec.arch, self.spec.num_classes, w, h, head=head)
        load_state_dict_strict(net, self.state_dict, source=str(self.checkpoint_path.name))
        return net.eval()

    def meta(self) -> ArtifactMeta:
        """The model's facts as artifact metadata (PyTorch, fp32, decoded head): the base of every artifact's."""
        s = self.spec
        return ArtifactMeta(model_id=s.id, arch=s.arch, input_size=s.input_size, labels=s.labels, head="decoded",
                            checkpoint_sha256=self.checkpoint_sha256)

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
    """``--model ID`` or ``--checkpoint PATH --arch A [--labels ...]``, plus an optional input size.

    A registry model's file is verified by its sha256 (so its content, arch and classes are the
    manifest's) and its weights are read only when used (``LazyStateDict``): a command that hands the
    weights to its workers, such as ``zoo export``, never imports torch in its own process. A user
    checkpoint is loaded at once (its arch and classes are inferred from its keys)."""
    if model_id and checkpoint:
        raise ZooError("give either --model or --checkpoint, not both")
    if model_id:
        spec = get_spec(model_id)
        entry = loader.manifest()[spec.checkpoint]
        path = loader.resolve(entry)
        sha = entry.sha256
        sd = loader.LazyStateDict(path, sha)
        k = len(entry.labels)  # the verified file's classes, as the manifest records them
        if labels:
            spec = replace(spec, labels=labels)
    elif checkpoint:
        from zoo.core.model.nets import infer_arch, infer_num_classes  # heavy: torch, for a user checkpoint only

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
    if len(spec.labels) != k:
        raise ZooError(
            f"--labels has {len(spec.labels)} labels ({','.join(spec.labels)}) but the checkpoint has {k} classes"
        )
    if input_size:
        spec = replace(spec, input_size=tuple(input_size))
    return ResolvedModel(spec, path, sha, sd)


def find_checkpoint(sha: str, explicit: Path | None) -> Path:
    """The checkpoint file whose sha256 is ``sha``: ``explicit`` (checked) or a published one."""
    if explicit is not None:
        got = loader.sha256_file(explicit)
        if got != sha:
            raise ZooError(f"--checkpoint {explicit} has sha256 {got}, the artifacts were exported from {sha}")
        return explicit
    for entry in loader.manifest().values():
        if entry.sha256 == sha:
            return loader.resolve(entry)
    raise ZooError(f"the artifacts were exported from checkpoint sha256 {sha[:12]}…, not a published one: pass --checkpoint PATH")
