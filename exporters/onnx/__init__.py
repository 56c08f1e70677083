"""ONNX target: torch.onnx (TorchScript exporter), onnxsim, BatchNorm folded, metadata inside.

Why the TorchScript exporter (``dynamo=False``): it writes one self-contained
file in ~1 s, folds BatchNorm into the convolutions in eval mode, and needs no
onnxscript; the dynamo exporter takes ~15 s here and writes external data by
default, which every downstream converter would then have to chase.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from zoo.exporters.base import CHOICE_MARGIN, ExportRequest, ExportResult, Target, choose
from zoo.exporters.onnx.convert import OPSET, add_nms, build_onnx, embed_metadata, to_fp16
from zoo.exporters.onnx.quantize import CALIB_METHODS, UNCLIPPED, float_kept_nodes, to_int8
from zoo.exporters.onnx.runner import OnnxRuntimeRunner, OnnxRuntimeTap, OpenCVRunner
from zoo.core.errors import ZooError
from zoo.core.timing import phase
from zoo.core.fsutil import atomic_write_bytes
from zoo.core.meta import ArtifactMeta
from zoo.core.node import WEB_INSTALL, NodeRunner, web_runtime_problem
from zoo.core.runtime import Runner, Tap

#: the npm package of the ort-web runtime (pinned by package-lock.json, installed by scripts/install.sh)
ORT_WEB_PACKAGES = ("onnxruntime-web",)
ORT_WEB_BACKEND = Path(__file__).with_name("ort_web.mjs")


class OnnxTarget(Target):
    name = "onnx"
    description = "ONNX (onnxruntime, OpenCV DNN)"
    suffixes = (".onnx",)
    source = "torch"
    precisions = ("fp32", "fp16", "int8")
    heads = ("decoded", "raw", "nms")  # nms: end-to-end graph whose output is final detections (--nms)
    layout = "NCHW"
    extra = None
    requires = ("onnx", "onnxsim", "onnxruntime")
    packages = ("torch", "onnx", "onnxsim", "onnxruntime")
    timeout = 300.0
    embeds_metadata = True
    dynamic = True

    def default_head(self, precision: str) -> str:
        # int8: the raw head, like the other targets (the decoded graph carries the priors in float)
        return "raw" if precision == "int8" else "decoded"

    def export(self, req: ExportRequest) -> ExportResult:
        import onnx  # heavy

        folded = {}  # the BatchNorm-folded weights in float64, for one rounding to float16
        if req.meta.head == "nms":
            if req.meta.precision != "fp32":
                raise ZooError("the end-to-end NMS graph is exported in fp32 only")
            model = add_nms(build_onnx(req.state_dict, req.meta.with_(head="decoded")), req.meta.num_classes)
        else:
            model = build_onnx(req.state_dict, req.meta, folded=folded)
        meta = req.meta
        if req.meta.precision == "fp16":
            model = to_fp16(model, folded)
        elif req.meta.precision == "int8":
            with phase("quantization"):
                model, meta = self._int8(req, model)
        embed_metadata(model, meta)
        onnx.checker.check_model(model)
        rel = Path(req.stem + ".onnx")
        atomic_write_bytes(req.out_dir / rel, model.SerializeToString())
        tools = self.tool_versions()
        tools["opset"] = str(OPSET)
        return ExportResult(primary=rel, files=[rel], meta=meta, tools=tools)

    def _int8(self, req: ExportRequest, model):
        """QDQ int8 with the activation calibration method that survives a change of kind of photo: each
        method (CALIB_METHODS) is fitted on one kind of calibration image (`ExportRequest.calib_kinds`:
        portraits and close-ups, or crowds: mosaics and collages) and scored against the fp32 graph on the
        other kind, then the reverse; its score is the worse of the two. The best worst case is kept,
        MinMax (unclipped ranges) preferred within CHOICE_MARGIN (`choose`); the ranges are then taken from
        every calibration image. Never the parity images."""
        import onnx  # heavy
        from zoo.core.images import load_batch  # heavy (OpenCV): export only, never the runners

        fp32_meta = req.meta.with_(precision="fp32")
        errors: dict[str, dict[str, float]] = {}
        with tempfile.TemporaryDirectory(dir=req.out_dir) as td:
            src = Path(td) / "fp32.onnx"
            onnx.save(model, str(src))
            kinds = req.calib_kinds(OnnxRuntimeRunner(fp32_meta, src))
            scorers = {k: req.quant_scorer(OnnxRuntimeRunner(fp32_meta, src), v) for k, v in kinds.items()}
            batches = {k: load_batch(v, *req.meta.input_size)[0] for k, v in kinds.items()}
            for method in CALIB_METHODS:
                errors[method] = {}
                for fit, other in (("portrait", "crowd"), ("crowd", "portrait")):
                    path = Path(td) / f"{method}-{fit}.onnx"
                    onnx.save(to_int8(model, batches[fit], req.float_kept, method), str(path))
                    errors[method][f"{fit}->{other}"] = scorers[other](OnnxRuntimeRunner(req.meta, path))
                errors[method]["worst"] = max(errors[method].values())
        best = choose({m: e["worst"] for m, e in errors.items()}, UNCLIPPED)
        x_all, _, _ = load_batch(sorted(req.calib), *req.meta.input_size)
        q = to_int8(model, x_all, req.float_kept, best)
        meta = req.meta.with_(io={
            "calibration": {"method": best, "images": [p.name for p in sorted(req.calib)],
                            "kinds": {k: [p.name for p in v] for k, v in kinds.items()},
                            "cross_kind_error": errors,
                            "rule": {"score": "worst of fit-on-one-kind, scored-on-the-other", "margin": CHOICE_MARGIN,
                                     "prefer": sorted(UNCLIPPED), "tie_break": "error, then name"}},
            "quantization": {"format": "QDQ, per-channel int8 weights, uint8 activations", "float_kept": req.float_kept,
                             "float_nodes": float_kept_nodes(q), "sensitivity": req.sensitivity}})
        return q, meta

    #: ort-web: onnxruntime-web's WebAssembly build in the Node worker (zoo.core.node), what a web page runs
    runtimes = ("onnxruntime", "opencv", "ort-web")
    web_heads = ("decoded", "raw")  # web/ultraface.js runs them in onnxruntime-web (not the nms head)
    # onnxruntime: zoo.exporters.onnx.quiet; ort-web: the WebAssembly build reports nothing (the Node audit of
    # tests/targets/test_no_network.py sees no look-up or connection)
    telemetry = {"onnxruntime": ("onnxruntime",), "opencv": (), "ort-web": ()}

    def offers_runtime(self, runtime: str, precision: str, head: str) -> bool:
        # OpenCV DNN has no NonMaxSuppression layer
        return runtime in self.runtimes and not (runtime == "opencv" and head == "nms")

    def runtime_problem(self, runtime: str) -> str | None:
        return web_runtime_problem(ORT_WEB_PACKAGES) if runtime == "ort-web" else None

    def runtime_hint(self, runtime: str) -> str:
        if runtime == "ort-web":
            return WEB_INSTALL
        return super().runtime_hint(runtime)

    def make_runner(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Runner:
        if runtime == "opencv":
            return OpenCVRunner(meta, primary, threads=threads)
        if runtime == "ort-web":
            return NodeRunner(meta, "ort-web", ORT_WEB_BACKEND, lambda: [_read_onnx(primary)], threads=threads,
                              packages=ORT_WEB_PACKAGES)
        return OnnxRuntimeRunner(meta, primary, threads=threads)

    def make_tap(self, runtime: str, primary: Path, meta: ArtifactMeta, threads: int) -> Tap:
        if runtime == "onnxruntime":
            return OnnxRuntimeTap(meta, primary, threads=threads)
        return super().make_tap(runtime, primary, meta, threads)


MAX_ONNX_BYTES = 1 << 30


def _read_onnx(path: Path) -> bytes:
    """The bytes ort-web gets: our files hold everything (no external data)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_ONNX_BYTES:
            raise ZooError(f"{path} is over {MAX_ONNX_BYTES >> 20} MiB: not an ONNX file of ours")
        return path.read_bytes()
    except OSError as e:
        raise ZooError(f"cannot read {path}: {e.strerror or e}") from None
