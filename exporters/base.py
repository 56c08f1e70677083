"""The export-target interface. A new target is one package under `exporters/` with one `Target`
subclass, plus one line in `exporters/__init__.py`; the CLI, plans, parity and tests pick it up."""
from __future__ import annotations

import json
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.core.errors import ZooError, nearest
from zoo.core.fsutil import atomic_write_text
from zoo.core.integrity import sidecar_files
from zoo.core.manifest import PRECISIONS
from zoo.core.meta import ArtifactMeta, sidecar_path
from zoo.core.model import priors as P
from zoo.core.model.layers import output_error
from zoo.core.model.processing import encode
from zoo.core.runtime import Runner, Tap

__all__ = ["CHOICE_MARGIN", "PRECISIONS", "ExportRequest", "ExportResult", "Target", "choose", "write_sidecar"]


#: a calibration choice made by measurement: the candidates whose error is within CHOICE_MARGIN of the best
#: one's count as equal, and among those the unclipped ranges (MinMax-like) are preferred; then the lowest
#: error, then the name (a fixed tie-break: the same errors always give the same choice)
CHOICE_MARGIN = 0.05
#: the kinds of calibration image a choice is scored across (`ExportRequest.calib_kinds`): "crowd" when the
#: fp32 model finds at least CROWD_FACES faces in it, or faces whose median height is under CROWD_HEIGHT of the
#: input's; "portrait" otherwise (few, large faces, or none)
CROWD_FACES = 4
CROWD_HEIGHT = 0.1


def choose(errors: dict[str, float], unclipped=()) -> str:
    """The candidate to keep from ``errors`` (name -> error, lower is better): the lowest, except that a
    candidate of ``unclipped`` within CHOICE_MARGIN of it is preferred; ties by error, then by name."""
    if not errors:
        raise ValueError("no candidate to choose from")
    best = min(errors.values())
    near = sorted(k for k, e in errors.items() if e <= best * (1 + CHOICE_MARGIN))
    pool = [k for k in near if k in set(unclipped)] or near
    return min(pool, key=lambda k: (errors[k], k))


@dataclass
class ExportRequest:
    """One artifact to build, handed to a target inside an isolated worker process."""

    meta: ArtifactMeta  # model facts, head, precision and target already filled in
    state_dict: Mapping  # verified weights (torch tensors; may load on first use)
    out_dir: Path  # a private temporary folder: write files here only
    stem: str  # base file name, e.g. "rfb-320-raw-int8"
    onnx_path: Path | None = None  # our fp32 ONNX of the same head, for targets whose source is "onnx"
    calib: list[Path] = field(default_factory=list)  # calibration images (int8)
    options: dict = field(default_factory=dict)  # target-specific options (e.g. {"nms": True})
    #: int8: the model-level sensitivity analysis (zoo.core.model.sensitivity), shared by every target:
    #: {"float_kept": [PyTorch module names to keep float], "layers": [...], ...}; empty when not run
    sensitivity: dict = field(default_factory=dict)
    #: the same weights as NumPy arrays, when the run prepared them (a .npz): no torch needed to read them
    weights_npz: Path | None = None

    def weights(self) -> dict:
        """The verified weights as NumPy arrays (original key names), for a target that builds its own
        network: from the run's archive when there is one, else from ``state_dict`` (torch)."""
        if self.weights_npz is not None:
            with np.load(self.weights_npz, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict.items()}

    @property
    def float_kept(self) -> list[str]:
        return list(self.sensitivity.get("float_kept", []))

    def calib_split(self) -> tuple[list[Path], list[Path]]:
        """(fit, held): the calibration images split for choosing a quantizer setting by measurement,
        never by the parity images: every third image is held out to score the candidates."""
        imgs = sorted(self.calib)
        held = imgs[2::3]
        return ([p for p in imgs if p not in held] or imgs), (held or imgs)

    def calib_kinds(self, reference: Runner) -> dict[str, list[Path]]:
        """The calibration images split by kind, from what ``reference`` (the fp32 file) finds in each at the
        trained size: {"portrait": [...], "crowd": [...]} (CROWD_FACES, CROWD_HEIGHT), each sorted. A set
        with only one kind is split in two by face count instead (fewest faces first, ties by name), so
        that a choice is still scored on images of another kind than it was fitted on; a single image is
        both kinds (nothing else to score on)."""
        from zoo.core.images import load_batch  # heavy (OpenCV): only int8 choices need it
        from zoo.core.model.processing import postprocess  # with OpenCV: only int8 choices need it

        imgs = sorted(self.calib)
        if len(imgs) < 2:
            return {"portrait": imgs, "crowd": imgs}
        w, h = self.meta.input_size
        x, _, _ = load_batch(imgs, w, h)
        with reference:
            out = reference.infer(x)
        faces = []
        for i in range(len(imgs)):
            d = postprocess(out["scores"][i], out["boxes"][i], w, h, self.meta.labels, candidate_size=1_000_000)
            faces.append((len(d), float(np.median([b.box[3] - b.box[1] for b in d])) if d else float(h)))
        kinds = {"portrait": [], "crowd": []}
        for p, (n, height) in zip(imgs, faces):
            kinds["crowd" if n >= CROWD_FACES or (n and height < CROWD_HEIGHT * h) else "portrait"].append(p)
        if not (kinds["portrait"] and kinds["crowd"]):
            order = sorted(range(len(imgs)), key=lambda i: (faces[i][0], imgs[i].name, str(imgs[i])))
            half = len(imgs) // 2
            kinds = {"portrait": sorted(imgs[i] for i in order[:half]), "crowd": sorted(imgs[i] for i in order[half:])}
        return kinds

    def quant_scorer(self, reference: Runner, images: list[Path]):
        """A function scoring an int8 candidate runner against ``reference`` (the fp32 file of the same
        format, which matches PyTorch to ~1e-5; no torch in a converter's process) on ``images``:
        face-score and box changes (zoo.core.model.layers.output_error); lower is better. The
        reference runs once, however many candidates are scored. A dynamic artifact is scored at its
        trained size and at the sizes its parity proves (P.parity_sizes), the mean of the errors."""
        from zoo.core.images import load_batch  # heavy (OpenCV): only int8 choices need it

        trained = tuple(self.meta.input_size)
        sizes = [trained] + ([s for _, s in P.parity_sizes(trained)] if self.meta.is_dynamic else [])
        xs = [load_batch(images, *size)[0] for size in sizes]
        with reference:
            refs = [reference.infer(x) for x in xs]

        def offsets(out: dict, size) -> np.ndarray:
            # a decoded head has no raw offsets: its corners, encoded against the priors of the size run
            # (the same units as a raw head's, so one error measure serves both contracts)
            return out["locations"] if "locations" in out else encode(out["boxes"], P.generate_priors(*size))

        ref_offsets = [offsets(ref, s) for ref, s in zip(refs, sizes)]  # once, however many candidates

        def score(runner: Runner) -> float:
            with runner:
                gots = [runner.infer(x) for x in xs]
            return float(np.mean([output_error((ref["scores"], ref_off), (got["scores"], offsets(got, s)))
                                  for ref, ref_off, got, s in zip(refs, ref_offsets, gots, sizes)]))

        return score

    def face_rich(self, reference: Runner, images: list[Path], k: int) -> list[tuple[Path, int]]:
        """The ``k`` images on which ``reference`` (the fp32 file) finds the most faces, with their
        counts (ties: name order), for a quantizer that can afford only a few images: its activation
        ranges then come from images full of faces of every size. Measured on rfb-640's MNN ADMM with
        the default calibration (held-out calibration error / faces kept on the 16 pinned photos):
        4 images spread over the set 0.0132 / 346 of 380, the 4 most face-rich 0.0075 / 377 of 380."""
        from zoo.core.images import load_batch  # heavy (OpenCV): only int8 choices need it
        from zoo.core.model.processing import postprocess  # with OpenCV: only int8 choices need it

        imgs = sorted(images)
        if len(imgs) <= k:
            return [(p, -1) for p in imgs]
        x, _, _ = load_batch(imgs, *self.meta.input_size)
        w, h = self.meta.input_size
        with reference:
            out = reference.infer(x)
        counts = [len(postprocess(out["scores"][i], out["boxes"][i], w, h, self.meta.labels, candidate_size=1_000_000))
                  for i in range(len(imgs))]
        order = sorted(range(len(imgs)), key=lambda i: (-counts[i], imgs[i].name, str(imgs[i])))
        return [(imgs[i], counts[i]) for i in order[:k]]


@dataclass
class ExportResult:
    primary: Path  # relative to out_dir: the file a runtime opens
    files: list[Path]  # relative to out_dir, primary and companions (sidecar metadata included)
    meta: ArtifactMeta
    tools: dict[str, str] = field(default_factory=dict)


class Target:
    """Base class of export targets."""

    name: str = ""
    description: str = ""
    suffixes: tuple[str, ...] = ()  # suffix of the primary file first
    source: str = "onnx"  # "torch" or "onnx": what the converter reads
    precisions: tuple[str, ...] = ("fp32",)
    heads: tuple[str, ...] = ("raw", "decoded")
    layout: str = "NCHW"
    extra: str | None = None  # the pip extra that installs its converter/runtime
    requires: tuple[str, ...] = ()  # importable modules needed for export and running
    #: the modules its worker imports up front (timed apart from the work); None: ``requires``. Not a
    #: package only found on disk (pnnx is run as an executable: importing it would load torch)
    preload: tuple[str, ...] | None = None
    packages: tuple[str, ...] = ()  # distributions whose versions go into the manifest
    timeout: float = 600.0  # seconds for one export in its worker process
    embeds_metadata: bool = False  # True: metadata inside the file; False: a JSON sidecar is written
    #: True: its exports may run one after another in a warm worker process (zoo.core.isolation):
    #: nothing process-global leaks into its files (the tests compare warm and fresh builds byte for byte)
    warm: bool = True
    #: True (with ``warm``): its imports are slow (TensorFlow: ~8 s), so a run starts its warm process
    #: at once, importing them beside the ONNX export and the PyTorch reference, not after them
    prestart: bool = False
    #: True: builds its own network from the weights as NumPy arrays (`ExportRequest.weights`), so its
    #: worker needs no torch when the run prepared them
    numpy_weights: bool = False
    #: True: `zoo export --dynamic` makes files whose batch, height and width are free at run time (the raw
    #: head: priors are made on the host for the actual size); False: ``dynamic_reason`` says why not
    dynamic: bool = False
    dynamic_reason: str = "its runtime needs the input shape fixed in the file"
    #: the heads of its files that web/ultraface.js loads in a page (the web runtimes run them): an export or
    #: release holding such a file ships the module beside it (zoo.pipeline.web)
    web_heads: tuple[str, ...] = ()
    #: runtimes that take seconds per image (TF.js's pure-JavaScript cpu backend): the test matrix re-runs
    #: parity in them on a few photos; the target's own runtime proves the same files on all of them
    slow_runtimes: tuple[str, ...] = ()
    #: True: its conversion writes the same graph at every input size of an architecture (only the constants'
    #: shapes and values change) from a network builder other targets prove at every size, so the test matrix
    #: exports it at the first model of each architecture only (for a slow export: TensorFlow's per job)
    one_size_per_arch: bool = False

    # -- availability ------------------------------------------------------------
    def missing(self) -> list[str]:
        """What this target lacks here to export and prove its files (empty: available): its Python
        modules, and when none of its runtimes can run, what the first one lacks."""
        miss = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if self.runtimes and all(self.runtime_problem(r) for r in self.runtimes):
            miss.append(self.runtime_problem(self.runtimes[0]))
        return miss

    def available(self) -> bool:
        return not self.missing()

    def install_hint(self) -> str:
        """What to do about ``missing()``."""
        pip = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if not pip and self.runtimes and all(self.runtime_problem(r) for r in self.runtimes):
            return self.runtime_hint(self.runtimes[0])
        return f"pip install 'ultraface-zoo[{self.extra}]'" if self.extra else "install it"

    def require(self) -> None:
        miss = self.missing()
        if miss:
            raise ZooError(f"target {self.name!r} needs {', '.join(miss)}, which is not installed: {self.install_hint()}")

    def runtime_problem(self, runtime: str) -> str | None:
        """Why ``runtime`` (one of ``runtimes``) cannot run here beyond the target's own modules (None: it can).
        The base target's runtimes come with its Python modules; a runtime that needs more (Node.js and
        npm packages for the web runtimes) overrides this."""
        return None

    def runtime_hint(self, runtime: str) -> str:
        """What to install for ``runtime`` when `runtime_problem` names a problem."""
        return f"pip install 'ultraface-zoo[{self.extra}]'" if self.extra else "install it"

    def runtime_status(self) -> dict[str, dict]:
        """Per runtime: {"available", "missing" (a reason or None), "install" (what to do, or None)}."""
        out = {}
        for r in self.runtimes:
            why = self.runtime_problem(r)
            out[r] = {"available": why is None, "missing": why, "install": self.runtime_hint(r) if why else None}
        return out

    def tool_versions(self) -> dict[str, str]:
        import importlib.metadata  # here: its import is a fifth of an emulated compat worker's start

        out = {}
        for pkg in self.packages:
            try:
                out[pkg] = importlib.metadata.version(pkg)
            except importlib.metadata.PackageNotFoundError:
                pass
        return out

    #: flavour -> (the flavour to use instead, why) for a flavour whose verdict may fail where the other
    #: holds (MNN full int8: its calibration loses crowd faces; weight-only int8 computes in float): a FAIL
    #: of that flavour points to the other (`advice`)
    fallback: dict[str, tuple[str, str]] = {}

    def advice(self, precision: str, passed: bool) -> str | None:
        """The line a failed verdict of ``precision`` ends with, pointing to the flavour that holds."""
        if passed or precision not in self.fallback:
            return None
        other, why = self.fallback[precision]
        return f"use {self.name} {other} instead: {why}"

    # -- policy ----------------------------------------------------------------------
    def default_head(self, precision: str) -> str:
        return self.heads[0]

    def expand(self, precision: str) -> list[str]:
        """The artifacts one requested precision yields (e.g. TFLite int8 -> float-IO and int8-IO flavours)."""
        return [precision]

    def head_reason(self, flavour: str, head: str) -> str | None:
        """Why this target does not make ``flavour`` with ``head`` (the plan skips it with this reason, and the
        run goes on), or None when it does."""
        return None

    def source_head(self, head: str) -> str:
        """Which head of our ONNX this target converts to produce ``head`` (for source == "onnx")."""
        return head

    # -- work ------------------------------------------------------------------------
    def export(self, req: ExportRequest) -> ExportResult:
        raise NotImplementedError

    # -- runtimes --------------------------------------------------------------------
    #: runtimes that can run this target's files; the first is the default
    runtimes: tuple[str, ...] = ()
    #: the usage reporting each runtime loads: runtime -> names of zoo.core.telemetry.REPORTERS (whose
    #: switches zoo sets); () for a runtime that reports nothing (the OS-level audit of the tests sees no
    #: look-up or connection). A runtime missing here is unknown: `zoo list` does not call it off
    telemetry: dict[str, tuple[str, ...]] = {}

    def offers_runtime(self, runtime: str, precision: str, head: str) -> bool:
        """Whether ``runtime`` runs this target's artifacts of that precision flavour and head."""
        return runtime in self.runtimes

    def check_runtime(self, runtime: str | None) -> str:
        """The runtime to use: for None the first that can run here (else the first); an error naming
        the available ones for an unknown runtime, and one saying what to install for a missing one."""
        if runtime is None:
            return next((r for r in self.runtimes if self.runtime_problem(r) is None), self.runtimes[0])
        if runtime not in self.runtimes:
            raise ZooError(f"target {self.name!r} has no runtime {runtime!r}{nearest(runtime, self.runtimes)}; "
                           f"it has: {', '.join(self.runtimes)}")
        why = self.runtime_problem(runtime)
        if why:
            raise ZooError(f"runtime {runtime!r} is not available here: {why}")
        return runtime

    #: why no converter option of this target builds for an older runtime release (`zoo export --min-runtime`)
    no_min_runtime: str = "its converter has no option to target an older release"

    def min_runtime_option(self, runtime: str, version: str) -> dict:
        """The converter options that build this target's files for ``runtime`` release ``version`` and older
        ones from it (`zoo export --min-runtime NAME==VERSION`); a ZooError when no option can. The base
        target has none; a target whose converter has such an option overrides this."""
        raise ZooError(f"--min-runtime {runtime}=={version}: target {self.name} cannot target an older {runtime}: "
                       f"{self.no_min_runtime}")

    def runner(self, primary: Path, meta: ArtifactMeta, threads: int = 1, runtime: str | None = None,
               options: dict | None = None) -> Runner:
        """A `Runner` (load on enter, infer, release on exit) for an artifact's primary file. ``options``:
        runtime options an app would set instead of ours (one of `app_options`, or a `restoring_options`)."""
        runtime = self.check_runtime(runtime)
        if not options:
            return self.make_runner(runtime, Path(primary), meta, threads)
        if runtime not in self.app_options:
            raise ZooError(f"runtime {runtime!r} of target {self.name!r} takes no runtime options (got {options})")
        return self.make_runner(runtime, Path(primary), meta, threads, options=options)

    # -- the options an app gets (`zoo compat --platform`) ------------------------------------
    #: per runtime, the option sets an app commonly runs with, each run by `zoo compat --platform`; a runtime
    #: not named runs with ours alone ({}). A target naming a runtime here takes ``options=`` in make_runner.
    app_options: dict[str, tuple[dict, ...]] = {}

    def options_for(self, runtime: str) -> list[dict]:
        return [dict(o) for o in self.app_options.get(runtime, ({},))]

    def restoring_options(self, runtime: str, options: dict) -> dict | None:
        """The options that give back the file's own arithmetic where ``options`` give a reduced one on
        some CPU (ncnn: fp16 off); None: no such option."""
        return None

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Runner:
        raise NotImplementedError

    # -- intermediates (zoo diff) --------------------------------------------------------
    def tap(self, primary: Path, meta: ArtifactMeta, threads: int = 1, runtime: str | None = None) -> Tap:
        """A `Tap` exposing every intermediate tensor of an artifact in ``runtime`` (default: the first)."""
        return self.make_tap(self.check_runtime(runtime), Path(primary), meta, threads)

    def make_tap(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Tap:
        """Override beside the runner: one place per runtime. The default refuses in one line."""
        raise ZooError(f"runtime {runtime!r} cannot expose the intermediate tensors of {self.name} artifacts "
                       f"(target {self.name!r} has no tap for it), so `zoo diff` cannot run there")


def write_sidecar(out_dir: Path, primary: Path, meta: ArtifactMeta, files=None) -> Path:
    """Write ``<primary stem>.json`` with the artifact metadata; return its relative path.

    ``files`` (relative to ``out_dir``; default: the primary alone) are recorded under ``"files"``
    with their sha256 and size, so the artifact can be verified on use (`zoo detect --artifact`)
    and a companion file of another model is caught. The metadata keys are those of
    ``ArtifactMeta`` (readers ignore ``"files"``)."""
    rel = sidecar_path(primary)
    d = meta.to_dict()
    d["files"] = sidecar_files(out_dir, primary, files if files is not None else [primary])
    atomic_write_text(out_dir / rel, json.dumps(d, sort_keys=True, separators=(",", ":")) + "\n")
    return rel
