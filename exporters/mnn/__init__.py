"""MNN target: our ONNX converted by MNN's native converter (never its CLI wrappers, which run pip
and post usage logs), fp32 / fp16 / int8 (full; the calibration method measured best on held-out calibration images) / int8-weight (weights only).

Modules: ``native`` (the compiled extensions and their captured log), ``convert`` (ONNX -> MNN,
bizCode metadata, reproducible files), ``quantize`` (full int8 calibration), ``runner`` (``MnnNet``)."""
from __future__ import annotations

import importlib.metadata
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from zoo.exporters.base import ExportRequest, ExportResult, Target
from zoo.exporters.mnn.convert import make_reproducible, onnx_to_mnn
from zoo.exporters.mnn.quantize import EMA_ARCHES, FACE_RICH_PIXELS, MAX_CALIB, skip_ops_for, spread
from zoo.exporters.mnn.runner import MnnNet, MnnTap
from zoo.core.errors import ZooError
from zoo.core.timing import phase
from zoo.core.fsutil import copy_file_atomic
from zoo.core.isolation import run_isolated
from zoo.core.meta import ArtifactMeta
from zoo.core.runtime import NativeRunner, Runner, Tap



class MnnTarget(Target):
    name = "mnn"
    description = "MNN (Alibaba; mobile and embedded CPUs)"
    suffixes = (".mnn",)
    source = "onnx"
    precisions = ("fp32", "fp16", "int8")
    heads = ("raw", "decoded")
    layout = "NCHW"
    extra = "mnn"
    requires = ("MNN",)
    packages = ("MNN",)
    timeout = 900.0
    runtimes = ("mnn",)
    telemetry = {"mnn": ()}
    dynamic = True  # the runner resizes the input (resizeTensor + resizeSession) to each batch's size

    fallback = {"int8": ("int8-weight", "MNN's full-int8 calibration (ADMM, EMA) loses faces at crowd scale on the "
                                         "RFB checkpoints; int8-weight stores the same int8 weights and computes in float")}

    def expand(self, precision: str) -> list[str]:
        # int8: full quantisation (weights and activations), and weight-only int8 (float compute)
        return ["int8", "int8-weight"] if precision == "int8" else [precision]

    #: the oldest MNN `--min-runtime` accepts: this project's declared minimum (pyproject: MNN>=3.0), the
    #: oldest MNN 3 wheel on PyPI and the oldest release `zoo compat` can prove a file in
    OLDEST = (3, 0)

    def min_runtime_option(self, runtime: str, version: str) -> dict:
        """MNN's converter has ``--targetVersion`` ("compatibility for old mnn engine", a major.minor
        number; default: the converter's own release): ``mnn==3.0.0`` converts with ``--targetVersion 3.0``."""
        m = re.fullmatch(r"(\d{1,3})\.(\d{1,3})(?:\.\d{1,5})?", version)
        if runtime != "mnn" or not m:
            raise ZooError(f"--min-runtime {runtime}=={version}: expected an MNN release such as mnn==3.0.0")
        wanted = (int(m[1]), int(m[2]))
        if wanted < self.OLDEST:
            raise ZooError(f"--min-runtime mnn=={version}: this project supports MNN >= {'.'.join(map(str, self.OLDEST))} "
                           "(no older release can be proven here)")
        try:
            have = tuple(int(v) for v in importlib.metadata.version("MNN").split(".")[:2])
        except (importlib.metadata.PackageNotFoundError, ValueError):
            have = None
        if have is not None and wanted > have:
            raise ZooError(f"--min-runtime mnn=={version} is newer than the converter (MNN {'.'.join(map(str, have))}): "
                           "nothing older to target")
        return {"targetVersion": f"{wanted[0]}.{wanted[1]}"}

    def head_reason(self, flavour: str, head: str) -> str | None:
        if flavour == "int8" and head != "raw":
            return (f"{self.name} int8 {head}: MNN full int8 quantises the raw-head graph only (the decoded one would "
                    f"quantise the prior arithmetic with the convolutions); use --head raw, or int8-weight (built beside it)")
        return None

    def export(self, req: ExportRequest) -> ExportResult:
        m = req.meta
        if m.precision == "int8" and m.head != "raw":
            raise ZooError("MNN full int8 quantises the raw-head graph (the decoded one bakes in the priors): use --head raw")
        rel = Path(req.stem + ".mnn")
        target_version = None
        spec = req.options.get("min_runtime")
        if spec:  # converted for an older MNN: said in the file's metadata too
            name, _, version = spec.partition("==")
            target_version = self.min_runtime_option(name, version)["targetVersion"]
            m = m.with_(io={**m.io, "min_runtime": spec, "converter": {"targetVersion": target_version}})
        biz = m.to_json()
        if m.precision == "int8":
            with phase("quantization"):
                meta = self._int8(req, rel, biz, m, target_version)
        else:
            onnx_to_mnn(req.onnx_path, req.out_dir / rel, fp16=m.precision == "fp16",
                        weight_int8=m.precision == "int8-weight", biz_code=biz, target_version=target_version)
            meta = m
        make_reproducible(req.out_dir / rel)
        return ExportResult(primary=rel, files=[rel], meta=meta, tools=self.tool_versions())

    def _int8(self, req: ExportRequest, rel: Path, biz: str, m: ArtifactMeta, target_version: str | None) -> ArtifactMeta:
        """Full int8 with the calibration that measures best on the held-out part of the calibration
        images (never the parity images), the sensitive layers kept float. The candidates: one ADMM on
        MAX_CALIB images (ADMM costs ~10 s of CPU per 320x240 image and ~40 s per 640x480 one): below
        FACE_RICH_PIXELS the images spread over the set, from it on the images where the fp32 model
        finds the most faces; and EMA on all of them for the architectures of EMA_ARCHES.
        Measured on the four published checkpoints (held-out calibration error; face-rich ADMM /
        spread ADMM / EMA): rfb-320 0.0109 / 0.0054 / 0.2457, slim-320 0.0114 / 0.0067 / 0.0073,
        rfb-640 0.0075 / 0.0132 / 0.2410 (the spread 4 lost 9% of rfb-640's faces), slim-640
        0.0071 / 0.0080 / 0.0067. The ADMM set the input size picks won on every one, so the other
        only doubled the cost; EMA loses almost every face of the RFB architecture (30x ADMM's error
        on both checkpoints) and won on slim-640. KL wrecked slim-320. The quantizations run at
        once, each in its own process (MNN's quantizer crashed when a second one ran in the process
        of the first). ``target_version``: the fp32 file the quantizer reads is converted with
        ``--targetVersion`` (the quantizer itself has no such option)."""
        fit, held = req.calib_split()
        errors: dict[str, float] = {}
        failures: dict[str, str] = {}
        with tempfile.TemporaryDirectory(dir=req.out_dir) as td:
            fp32 = Path(td) / "fp32.mnn"
            onnx_to_mnn(req.onnx_path, fp32, biz_code=biz, target_version=target_version)
            skip = skip_ops_for(req.onnx_path, req.float_kept)
            score = req.quant_scorer(self.runner(fp32, m.with_(precision="fp32")), held)
            rich = req.face_rich(self.runner(fp32, m.with_(precision="fp32")), fit, MAX_CALIB)
            w, h = m.input_size
            candidates = ({"ADMM face-rich": ("ADMM", [p for p, _ in rich])} if w * h >= FACE_RICH_PIXELS
                          else {"ADMM spread": ("ADMM", spread(fit))})
            if m.arch in EMA_ARCHES:
                candidates["EMA"] = ("EMA", fit)

            def quantize(name: str) -> dict:
                method, images = candidates[name]
                tag = name.replace(" ", "-")
                job = {"src": str(fp32), "dst": str(Path(td) / f"{tag}.mnn"), "images": [str(p) for p in images],
                       "width": m.input_size[0], "height": m.input_size[1], "method": method,
                       "weight_method": "MAX_ABS", "skip_ops": skip}
                return run_isolated("zoo.exporters.mnn.quantize", [], job, Path(td) / "logs", self.timeout / 3, f"quant-{tag}")

            with ThreadPoolExecutor(max_workers=2) as pool:
                results = dict(zip(candidates, pool.map(quantize, list(candidates))))
            for name, res in results.items():
                if not res.get("ok"):
                    failures[name] = res.get("error", "unknown error")
                    continue
                errors[name] = score(self.runner(Path(td) / f"{name.replace(' ', '-')}.mnn", m))
            if not errors:
                raise ZooError("MNN int8 quantization failed with every method: "
                               + "; ".join(f"{k}: {v}" for k, v in failures.items()))
            best = min(errors, key=lambda k: (errors[k], k))
            copy_file_atomic(Path(td) / f"{best.replace(' ', '-')}.mnn", req.out_dir / rel)
        method, used = candidates[best]
        return m.with_(io={
            **m.io,
            "calibration": {"method": method, "weights": "MAX_ABS", "images": [p.name for p in used],
                            "chosen": best, "candidates": list(candidates), "face_counts": {p.name: n for p, n in rich},
                            "held_out": [p.name for p in held], "held_out_error": errors,
                            "failed": failures},
            "quantization": {"float_kept": req.float_kept, "float_ops": skip, "sensitivity": req.sensitivity}})

    def default_head(self, precision: str) -> str:
        return "raw"

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int,
                    options: dict | None = None) -> Runner:
        options = dict(options or {})
        precision = options.pop("precision", "high")
        if options:
            raise ZooError(f"MNN takes the option 'precision' only, not {', '.join(options)}")
        return NativeRunner(meta, lambda: MnnNet(primary, threads=threads, precision=precision), "mnn", threads)

    #: the precision our runner uses, and `low` as apps commonly set it (fp16 arithmetic on ARMv8.2)
    app_options = {"mnn": ({"precision": "high"}, {"precision": "low"})}

    def restoring_options(self, runtime: str, options: dict) -> dict | None:
        return {**options, "precision": "high"}

    def make_tap(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Tap:
        return MnnTap(meta, primary, threads=threads)
