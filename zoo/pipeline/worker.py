"""The isolated worker: one export, one parity check, one golden-kit run or one probe per process.

    python -m zoo.pipeline.worker JOB.json RESULT.json

A converter that crashes, hangs or prints megabytes of logs only takes this
process down; the parent (`run_worker`) reads RESULT.json (absent = crash) and moves on.
"""
from __future__ import annotations

import time

_T0 = time.time()  # when this interpreter reached our code: start-up ends here (zoo export --profile)

import importlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from zoo.checkpoints.loader import LazyStateDict, load_state_dict  # noqa: E402
from zoo.exporters import get_target  # noqa: E402
from zoo.exporters.base import ExportRequest, write_sidecar  # noqa: E402
from zoo.validation import parity as parity_rules  # noqa: E402
from zoo.validation.parity import (  # noqa: E402
    DETECT, DETECTION_FAILURE, MIN_EVIDENCE, TIERS, ParityInput, compare, detection_failure, detection_verdict,
    detections_from_rows, faces, match, shift_applies,
)
from zoo.core import shift  # noqa: E402
from zoo.core.errors import ZooError  # noqa: E402
from zoo.core.fsutil import atomic_write_bytes  # noqa: E402
from zoo.core.images import image_records, load_batch  # noqa: E402
from zoo.core.integrity import output_problem  # noqa: E402
from zoo.core.isolation import WarmWorkers, run_isolated, worker_main  # noqa: E402
from zoo.core.manifest import base_precision  # noqa: E402
from zoo.core.model import priors as P  # noqa: E402
from zoo.core.model.processing import postprocess  # noqa: E402
from zoo.core.meta import ArtifactMeta  # noqa: E402
from zoo.core.runtime import TorchRunner  # noqa: E402
from zoo.core.timing import phase, take  # noqa: E402
from zoo.pipeline.reference import NAMES, base_head, read_or_compute, shift_head, write_reference  # noqa: E402

_T1 = time.time()  # our modules imported (NumPy, OpenCV, the registry): the rest of start-up


MODULE = "zoo.pipeline.worker"
#: the jobs that only run PyTorch: one warm process runs them one after another (torch imported once)
TORCH_KINDS = ("reference", "sensitivity")
ANALYSIS_THREADS = 1  # the int8 sensitivity analysis' torch threads (part of its cache key)
PRELOAD_TIMEOUT = 300.0  # seconds for a warm process's imports (TensorFlow: ~8 s on 2 free cores)


def warm_workers() -> WarmWorkers:
    """Warm processes of this worker for one run (`run_worker(..., warm=)`)."""
    return WarmWorkers(MODULE)


def run_worker(job: dict, work: Path, timeout: float, name: str, warm: WarmWorkers | None = None) -> dict:
    """One job in its own interpreter; a crash or hang becomes an error result
    ("converter crashed ..." for an export, "runtime crashed ..." for the others). With ``warm``,
    an export or check job runs in a warm process of its target's family, and the PyTorch jobs (the
    reference, the sensitivity analysis) in one of their own, with the same guarantees."""
    kind = job.get("kind", "export")
    what = "converter" if kind == "export" else "runtime"
    if warm is not None and kind in ("export", "check", "report") and get_target(job["target"]).warm:
        # a report job (after a release's exports) runs in the process its target's exports warmed up
        family = f"{'export' if kind == 'report' else kind}:{job['target']}"
        return warm.run(family, job, work, timeout, name, what=what)
    if warm is not None and kind in TORCH_KINDS:
        return warm.run("torch", job, work, timeout, name, what=what)
    return run_isolated(MODULE, [], job, work, timeout, name, what=what)


def prestart_export_worker(warm: WarmWorkers, target: str, work: Path) -> None:
    """Start ``target``'s warm export process now, importing its runtime modules in the background
    (`Target.prestart`): its exports then find them loaded."""
    warm.prestart(f"export:{target}", {"kind": "preload", "target": target}, work, PRELOAD_TIMEOUT, f"preload-{target}")


def _inputs(images: list[str], meta: ArtifactMeta, size: tuple[int, int] | None = None) -> tuple[np.ndarray, ParityInput]:
    x, names, sizes = load_batch([Path(p) for p in images], *(size or meta.input_size))
    return x, ParityInput(x, [Path(n).name for n in names], sizes, [r["sha256"] for r in image_records(names)])


def _evidence_args(job: dict, calibration: list[dict] | None) -> dict:
    """compare()'s evidence arguments: the job's --min-evidence, and for int8 the calibration set by sha256."""
    int8 = base_precision(job["meta"]["precision"]) == "int8"
    return {"min_evidence": job.get("min_evidence", MIN_EVIDENCE), "calibration": calibration if int8 else None}


def _reference_outputs(state_dict, meta: ArtifactMeta, x: np.ndarray, reference: dict | None, mosaics: bool = False) -> dict:
    """The PyTorch outputs for ``x`` (the parity photos, or with ``mosaics`` the shift gate's mosaics of
    them): the stored ones the parent prepared (zoo.pipeline.reference), checked again here, else the model
    run in this process."""
    net_head = "decoded" if meta.head == "nms" else meta.head
    ref_head = shift_head(net_head) if mosaics else net_head

    def compute() -> dict:
        with TorchRunner(meta.with_(target="pytorch", precision="fp32", head=net_head), state_dict) as ref_runner:
            return ref_runner.infer(x)

    with phase("reference"):
        if reference and reference.get(ref_head):  # computed here when not stored: kept for the next run
            key, path = reference[ref_head]
            return read_or_compute(Path(path), key, ref_head, len(x), meta.prior_count, meta.num_classes, compute)
        return compute()


def _parity(runner, state_dict, meta: ArtifactMeta, images: list[str], evidence: dict,
            reference: dict | None = None) -> dict:
    """The parity result on the photos and, for fp16 and int8, the shift gate on their mosaics at the
    trained size (``result["shift"]``, which gates the artifact too)."""
    x, data = _inputs(images, meta)
    ref = _reference_outputs(state_dict, meta, x, reference)
    on_shift = shift_applies(meta.precision, meta.head)
    if on_shift:
        xs, mosaics, ordered = shift.batch(images, *meta.input_size)
        sha = dict(zip(data.names, data.sha256))
        ref_s = _reference_outputs(state_dict, meta, xs, reference, mosaics=True)
    with phase("inference"):
        with runner:
            got = runner.infer(x)
            got_s = runner.infer(xs) if on_shift else None
    result = compare(ref, got, data, meta.labels, meta.prior_count, meta.precision, **evidence)
    if on_shift:
        w, h = meta.input_size
        sdata = ParityInput(xs, [m.name for m in mosaics], [(w, h)] * len(mosaics))
        sh = parity_rules.shift(ref_s, got_s, sdata, mosaics, [sha.get(p.name) for p in ordered], meta.labels,
                                meta.prior_count, meta.precision,
                                evidence.get("min_evidence", MIN_EVIDENCE))
        result["shift"] = sh
        result["failures"] += sh["failures"]
        result["passed"] = not result["failures"]
    return result


#: the photos of the batch check: a batch of this many different photos, each equal to its batch-1 run
DYNAMIC_BATCH = 4


def _summary(r: dict) -> dict:
    d = r.get("detections", {})
    return {"passed": r["passed"], "matched": d.get("matched", 0), "reference": d.get("reference", 0),
            "extra": d.get("extra", 0), "min_iou": d.get("min_iou"),
            "max_abs": {k: v["max_abs"] for k, v in r.get("outputs", {}).items()}, "failures": r.get("failures", [])}


def _dynamic_parity(runner, state_dict, meta: ArtifactMeta, images: list[str], evidence: dict) -> dict:
    """A dynamic artifact proven as ONE file at several sizes (P.parity_sizes: twice the trained size,
    portrait, 16:9, odd) against the PyTorch model at each size, and a batch of DYNAMIC_BATCH different
    photos whose every result equals the photo's batch-1 result (same file, same size).

    Tensors and invariants are gated at every size. Detections are gated on the counts of all the
    other sizes together, under the precision's tier, as the trained size's verdict pools its photos:
    one size of 16 photos is ~300 faces, where one face is 0.3%, and an int8 file's per-size counts
    scatter around the tier (rfb-320 ncnn int8, 9 sizes: 98.4-100% kept, 99.4% over all)."""
    out: dict = {"free_axes": meta.dynamic.get("free_axes", []), "sizes": {}, "batch": None, "failures": []}
    tier = TIERS[base_precision(meta.precision)]
    pooled = {"matched": 0, "reference": 0, "extra": 0, "borderline_missed": 0, "borderline_extra": 0}
    with runner:
        for label, (w, h) in P.parity_sizes(tuple(meta.input_size)):
            x, data = _inputs(images, meta, (w, h))
            with phase("reference"):
                ref_meta = meta.with_(target="pytorch", precision="fp32", input_size=[w, h], dynamic={}, io={})
                with TorchRunner(ref_meta, state_dict) as ref_runner:
                    ref = ref_runner.infer(x)
            with phase("inference"):
                got = runner.infer(x)
            r = compare(ref, got, data, meta.labels, P.prior_count(w, h), meta.precision, **evidence)
            out["sizes"][f"{w}x{h}"] = {"kind": label, **_summary(r)}
            # tensors and invariants are gated at every size; detections over the sizes together (below)
            out["failures"] += [f"at {w}x{h} ({label}): {f}" for f in r["failures"] if not f.startswith(DETECTION_FAILURE)]
            for k in pooled:
                pooled[k] += r["detections"][k]
        pooled["passed"] = detection_verdict(pooled, tier)
        out["pooled"] = pooled
        if not pooled["passed"]:
            worst = max(out["sizes"], key=lambda s: out["sizes"][s]["reference"] - out["sizes"][s]["matched"]
                        + out["sizes"][s]["extra"])
            out["failures"].append(detection_failure(pooled, tier, f"over the {len(out['sizes'])} other sizes, ")
                                   + f" (worst size {worst})")
        photos = list(images)[:DYNAMIC_BATCH]
        if len(photos) >= 2:
            x, data = _inputs(photos, meta)
            with phase("inference"):
                one = [runner.infer(x[i:i + 1]) for i in range(len(photos))]
                many = runner.infer(x)
            single = {k: np.concatenate([o[k] for o in one], axis=0) for k in many if not isinstance(many[k], list)}
            r = compare(single, many, data, meta.labels, meta.prior_count, meta.precision, **evidence)
            out["batch"] = {"n": len(photos), **_summary(r)}
            out["failures"] += [f"batch of {len(photos)}: {f}" for f in r["failures"]]
    out["tested_sizes"] = [f"{meta.input_size[0]}x{meta.input_size[1]}"] + list(out["sizes"])
    out["passed"] = not out["failures"]
    return out


def _add_dynamic(parity: dict, runner, state_dict, meta: ArtifactMeta, images: list[str], evidence: dict) -> None:
    """A dynamic artifact's verdict includes the one file at several sizes and a batch (_dynamic_parity)."""
    dyn = _dynamic_parity(runner, state_dict, meta, images, evidence)
    parity["dynamic"] = dyn
    parity["failures"] = parity["failures"] + dyn["failures"]
    parity["passed"] = parity["passed"] and dyn["passed"]


def _golden(runner, meta: ArtifactMeta, job: dict) -> dict:
    """Run the golden images through the artifact and compare with the stored PyTorch outputs."""
    ref = {p.stem: np.load(p) for p in sorted(Path(job["reference_dir"]).glob("*.npy"))}
    x, data = _inputs(job["images"], meta)
    with runner:
        got = runner.infer(x)
    return compare(ref, got, data, meta.labels, meta.prior_count, meta.precision, **_evidence_args(job, None))


def _probe(runner, meta: ArtifactMeta, check_head: bool) -> dict:
    """Load the artifact, run one inference on zeros and check the outputs: finite, no absurd box
    (weights that do not fit), and with ``check_head`` of the head the metadata declares (a sidecar
    that disagrees with its file is refused)."""
    w, h = meta.input_size
    with runner:
        out = runner.infer(np.zeros((1, 3, h, w), np.float32))
    problem = output_problem(out, meta, check_head=check_head)
    if problem is None:
        return {"ok": True}
    kind, what = problem
    return {"ok": False, "error": what, "problem": kind}


def _box(b) -> list[float]:
    return [round(float(v), 1) for v in b]


def _report_view(runner, state_dict, meta: ArtifactMeta, job: dict) -> dict:
    """`zoo report --format html`'s view of one artifact: its photos run through it and through PyTorch
    (the golden kit's stored outputs with ``reference_dir``), each photo's faces box by box (kept, missed,
    extra: parity's own rule), and with ``diff`` the layer-by-layer error (zoo diff) on the photo that
    departs most."""
    x, data = _inputs(job["images"], meta)
    if job.get("reference_dir"):
        ref = {p.stem: np.load(p) for p in sorted(Path(job["reference_dir"]).glob("*.npy"))}
    else:
        ref = _reference_outputs(state_dict, meta, x, None)
    with runner:
        got = runner.infer(x)
    tier = TIERS[base_precision(meta.precision)]
    low = {**DETECT, "score_threshold": DETECT["score_threshold"] - tier["score_margin"]}
    photos = []
    for i, (name, (w, h)) in enumerate(zip(data.names, data.sizes)):
        rd = postprocess(ref["scores"][i], ref["boxes"][i], w, h, meta.labels, **low)
        gd = (detections_from_rows(got["detections"][i], w, h, meta.labels) if "detections" in got
              else postprocess(got["scores"][i], got["boxes"][i], w, h, meta.labels, **low))
        c = match(rd, gd, tier["min_iou"], DETECT["score_threshold"], tier["score_margin"])
        c.pop("by_size")
        f = faces(rd, gd, tier)
        photos.append({"image": name, "width": w, "height": h, "counts": c, "borderline": len(f["borderline"]),
                       "kept": [[_box(r.box), round(r.score, 4), _box(g.box), round(g.score, 4)] for r, g in f["kept"]],
                       "missed": [[_box(d.box), round(d.score, 4)] for d in f["missed"]],
                       "extra": [[_box(d.box), round(d.score, 4)] for d in f["extra"]]})
    worst = max(range(len(photos)), key=lambda i: (photos[i]["counts"]["missed"] + photos[i]["counts"]["extra"],
                                                   photos[i]["counts"]["borderline"],
                                                   photos[i]["counts"]["max_score_change"], -i))
    out: dict = {"ok": True, "photos": photos, "worst": worst}
    if job.get("diff"):
        from zoo.validation.diff import diff_artifact, open_tap  # heavy: the runtime's tap and torch

        try:
            opened = open_tap(Path(job["primary"]), job.get("runtime"), job.get("threads", 1))
            res = diff_artifact(Path(job["primary"]), x[worst:worst + 1], state_dict, opened=opened)["result"]
            out["diff"] = {k: res[k] for k in ("runtime", "images", "first_divergent", "largest_growth")}
            out["diff"]["layers"] = [{k: l[k] for k in ("torch", "runtime", "rel_l2", "max_abs", "over")}
                                     for l in res["layers"] if l["torch"]]
        except ZooError as e:
            out["diff_error"] = str(e)
    return out


def _sensitivity(job: dict) -> dict:
    """The model-level int8 sensitivity analysis on the calibration images (zoo.core.model.sensitivity)."""
    from zoo.core.model import sensitivity  # heavy (torch): only this job needs it

    meta = ArtifactMeta.from_dict(job["meta"])
    state_dict = load_state_dict(Path(job["checkpoint"]), job["checkpoint_sha256"])
    # one thread, whatever the machine: the analysis runs beside the float jobs (several OpenMP threads on
    # busy cores measured 6x slower: 151 s against 24 s for slim-320), and its figures, recorded in every
    # int8 artifact, must not depend on a thread count
    with TorchRunner(meta.with_(target="pytorch", precision="fp32", head="raw"), state_dict,
                     threads=ANALYSIS_THREADS) as ref:
        model = ref.net
    x, _, _ = load_batch([Path(p) for p in job["calib"]], *meta.input_size)
    analysis = sensitivity.analyse(model, x)
    analysis["float_kept"] = sensitivity.choose(analysis)
    params = {l["module"]: l["params"] for l in analysis["layers"]}
    # the price: a float weight takes 4 bytes where int8 takes 1
    analysis["float_kept_extra_bytes"] = {n: 3 * params[n] for n in analysis["float_kept"]}
    analysis["rule"] = {"keep_ratio": sensitivity.KEEP_RATIO, "max_float_params": sensitivity.MAX_FLOAT_PARAMS}
    return {"ok": True, "sensitivity": analysis}


def _reference(job: dict) -> dict:
    """The PyTorch reference outputs of one model for the heads asked (``job["heads"]``: head ->
    [key, path]) on the parity images, written where asked; and, with ``job["weights"]``, the
    verified weights as a NumPy archive for the converters that build their own network."""
    meta = ArtifactMeta.from_dict(job["meta"])
    with phase("imports"):
        importlib.import_module("torch")
    state_dict = load_state_dict(Path(job["checkpoint"]), job["checkpoint_sha256"])
    if job.get("weights"):
        buf = io.BytesIO()
        np.savez(buf, **{k: v.detach().cpu().numpy() for k, v in state_dict.items()})
        atomic_write_bytes(Path(job["weights"]), buf.getvalue())
    if job.get("heads"):
        paths = [Path(p) for p in job["images"]]
        x, _, _ = load_batch(paths, *meta.input_size)
        xs = None
        for head, (key, path) in sorted(job["heads"].items()):
            net_head = base_head(head)
            if net_head != head and xs is None:  # the shift gate's mosaics of the photos
                xs, _, _ = shift.batch(paths, *meta.input_size)
            with phase("reference"):
                with TorchRunner(meta.with_(target="pytorch", precision="fp32", head=net_head), state_dict,
                                 threads=job.get("threads", 1)) as r:
                    out = r.infer(x if net_head == head else xs)
            write_reference(Path(path), key, {n: out[n] for n in NAMES[net_head]})
    return {"ok": True}


def _imports(target, torch: bool) -> None:
    """Import the target's runtime modules (and torch when the job converts from PyTorch) up front,
    so the profile shows what they cost apart from the work."""
    with phase("imports"):
        mods = target.requires if target.preload is None else target.preload
        for m in (*mods, *(["torch"] if torch else [])):
            importlib.import_module(m)


#: CPU seconds this process (and the children it waited for) had used when its last job ended: a warm
#: worker's next job counts from here, a new process's first job from its start (interpreter included)
_CPU_MARK = 0.0


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(job: dict) -> dict:
    global _CPU_MARK
    res = _run(job)
    if isinstance(res, dict):
        cpu = _cpu_seconds()
        res["timings"] = {**take(), "t0": _T0, "t1": _T1, "t_end": time.time(), "torch": "torch" in sys.modules,
                          "cpu": round(cpu - _CPU_MARK, 3)}
        _CPU_MARK = cpu
    return res


def _run(job: dict) -> dict:
    if job["kind"] == "sensitivity":
        return _sensitivity(job)
    if job["kind"] == "reference":
        return _reference(job)
    target = get_target(job["target"])
    target.require()
    if job["kind"] == "preload":  # a warm process's imports, before its first export (prestart_export_worker)
        _imports(target, torch=False)
        return {"ok": True}
    meta = ArtifactMeta.from_dict(job["meta"])
    threads, runtime = job.get("threads", 1), job.get("runtime")
    if job["kind"] == "probe":
        runner = target.runner(Path(job["primary"]), meta, threads=threads, runtime=runtime)
        return _probe(runner, meta, bool(job.get("check_head", True)))
    if job["kind"] == "golden":
        runner = target.runner(Path(job["primary"]), meta, threads=threads, runtime=runtime)
        # which runtime ran the kit is part of the record: `zoo verify --runtime R` proves R, not the default
        return {"ok": True, "parity": {**_golden(runner, meta, job), "runtime": runner.name}}
    state_dict = (LazyStateDict(Path(job["checkpoint"]), job["checkpoint_sha256"])  # read only if needed
                  if job.get("checkpoint") else None)
    if job["kind"] == "report":
        runner = target.runner(Path(job["primary"]), meta, threads=threads, runtime=runtime)
        return _report_view(runner, state_dict, meta, job)
    if job["kind"] == "check":
        _imports(target, torch=False)
        runner = target.runner(Path(job["primary"]), meta, threads=threads, runtime=runtime)
        # the calibration recorded in the manifest, compared with these parity images
        evidence = _evidence_args(job, job.get("calibration"))
        parity = _parity(runner, state_dict, meta, job["images"], evidence, job.get("reference"))
        if meta.is_dynamic:
            _add_dynamic(parity, target.runner(Path(job["primary"]), meta, threads=threads, runtime=runtime),
                         state_dict, meta, job["images"], evidence)
        if target.advice(meta.precision, parity["passed"]):
            parity["advice"] = target.advice(meta.precision, parity["passed"])
        return {"ok": True, "parity": parity}
    _imports(target, torch=target.source == "torch" and not job.get("weights"))
    out_dir = Path(job["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    req = ExportRequest(
        meta=meta,
        state_dict=state_dict,
        out_dir=out_dir,
        stem=job["stem"],
        onnx_path=Path(job["onnx_path"]) if job.get("onnx_path") else None,
        calib=[Path(p) for p in job.get("calib", [])],
        options=job.get("options", {}),
        sensitivity=job.get("sensitivity") or {},
        weights_npz=Path(job["weights"]) if job.get("weights") else None,
    )
    with phase("export"):
        res = target.export(req)
    files = list(res.files)
    if not target.embeds_metadata:
        files.append(write_sidecar(out_dir, res.primary, res.meta, res.files))
    parity = None
    if job.get("images"):
        runner = target.runner(out_dir / res.primary, res.meta, threads=threads)
        calib = image_records(job.get("calib", [])) if base_precision(res.meta.precision) == "int8" else None
        parity = _parity(runner, state_dict, res.meta, job["images"], _evidence_args(job, calib), job.get("reference"))
        if res.meta.is_dynamic:
            _add_dynamic(parity, target.runner(out_dir / res.primary, res.meta, threads=threads), state_dict,
                         res.meta, job["images"], _evidence_args(job, calib))
    if parity is not None and target.advice(res.meta.precision, parity["passed"]):
        parity["advice"] = target.advice(res.meta.precision, parity["passed"])
    return {
        "ok": True,
        "primary": str(res.primary),
        "files": [str(f) for f in files],
        "meta": res.meta.to_dict(),
        "tools": res.tools,
        "parity": parity,
    }


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:], run))
