"""``MnnNet``: an .mnn model on MNN's CPU backend, loaded on ``__enter__`` and released on ``__exit__``.

MNN creates sessions on models it cannot run (e.g. the original project's
int8 files: "Don't support type [EltwiseInt8]"); the failure only shows as
copy/run errors.  ``MnnNet`` therefore runs a probe inference when it loads
and raises ZooError with MNN's own message.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from zoo.exporters.mnn.native import existing_file, import_mnn, native_output, tail
from zoo.core.errors import ZooError
from zoo.core.model.priors import DYNAMIC_MIN_SIDE
from zoo.core.platforms import fp16_arithmetic
from zoo.core.model.layers import onnx_origin
from zoo.core.runtime import Tap

# MNN::Interpreter::HintMode::WINOGRAD_MEMORY_LEVEL
_HINT_WINOGRAD_MEMORY_LEVEL = 3


class MnnNet:
    """Run an .mnn model on the CPU backend with fp32 ("high") precision.

    ``with MnnNet(path, threads=1) as net: outs = net.infer(x)`` where ``x`` is
    (N, C, H, W) float32 (already preprocessed) and ``outs`` maps every output
    name to an (N, ...) float32 array.  The constructor only stores its
    arguments; ``__enter__`` checks them, loads the model and runs one probe
    inference, ``__exit__`` releases it.  Samples are run one at a time (the
    graphs have batch-1 reshapes).  A different H x W than the model's resizes
    the session.  Every MNN failure (unsupported op, session not ready, run
    error, empty output) raises ZooError.  Not thread-safe; use one instance
    per thread.

    ``precision``: MNN's session precision, ``high`` (ours: fp32 everywhere) or, as apps commonly set
    it, ``normal`` or ``low`` (fp16 arithmetic on a CPU that has it, ARMv8.2; fp32 elsewhere).
    """

    PRECISIONS = ("high", "normal", "low")

    def __init__(self, path: str | os.PathLike, *, threads: int = 1, precision: str = "high") -> None:
        self.path = Path(path)
        self.threads = threads
        if precision not in self.PRECISIONS:
            raise ZooError(f"MNN precision {precision!r}: expected one of {', '.join(self.PRECISIONS)}")
        self.precision = precision
        self._MNN = None
        self._interp = None
        self._session = None
        self._input_shape: tuple[int, ...] = ()

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "MnnNet":
        if self._session is None:
            self._load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the session and the model (the interpreter owns the session)."""
        self._session = None
        self._interp = None

    def _load(self) -> None:
        threads = self.threads
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ZooError(f"threads must be a positive integer, got {threads!r}")
        self.threads = int(threads)
        existing_file(self.path, "MNN model")
        with native_output() as log:
            MNN = self._MNN = import_mnn()
            try:
                interp = MNN.Interpreter(str(self.path))
                # Measured: with MNN's default Winograd setting RFB's boxes are
                # off onnxruntime by up to 1.1e-3; WINOGRAD_MEMORY_LEVEL 0 brings
                # that to 2.7e-5 with no measurable slowdown.
                interp.setSessionHint(_HINT_WINOGRAD_MEMORY_LEVEL, 0)
                session = interp.createSession(
                    {"backend": "CPU", "precision": self.precision, "numThread": self.threads}
                )
                err = ""
            except Exception as exc:
                interp = session = None
                err = str(exc)
        if interp is None or session is None:
            raise ZooError(f"MNN cannot load {self.path.name}: {err} -- MNN: {tail(log[0])}".rstrip())
        load_log = log[0]
        self._interp, self._session = interp, session
        self._input_shape = tuple(int(d) for d in interp.getSessionInput(session).getShape())
        if len(self._input_shape) != 4:
            self.close()
            raise ZooError(f"{self.path.name}: expected a 4-D image input, got shape {self._input_shape}")
        # Probe run: MNN creates sessions on unsupported models and only fails later.
        with native_output() as log:
            try:
                if min(self._input_shape) <= 0:  # free axes (a dynamic file): probe at the smallest allowed size
                    c = self._input_shape[1] if self._input_shape[1] > 0 else 3
                    self._resize((1, c, DYNAMIC_MIN_SIDE, DYNAMIC_MIN_SIDE))
                self._run_one(np.zeros((1,) + self._input_shape[1:], np.float32))
            except ZooError as exc:
                failure = str(exc)
            else:
                failure = ""
        if failure:
            self.close()
            raise ZooError(f"{failure} -- MNN: {tail(load_log + log[0])}")

    def settings(self) -> dict:
        """The session's options, and fp16 arithmetic where MNN uses it: ``precision: low`` on a CPU with
        fp16 arithmetic (MNN's ARMv8.2 kernels; measured on rfb-320: 3e-3 from x86 under ARMv8.2, equal
        to ``high`` under ARMv8.0 and on x86)."""
        reduced = "fp16 arithmetic" if self.precision == "low" and fp16_arithmetic() else None
        return {"options": {"backend": "CPU", "precision": self.precision, "numThread": self.threads,
                            "winograd_memory_level": 0}, "reduced": reduced}

    # -- inference -------------------------------------------------------
    def _fail(self, what: str) -> ZooError:
        return ZooError(f"MNN failed to run {self.path.name}: {what}")

    def _resize(self, shape: tuple[int, ...]) -> None:
        interp, session = self._interp, self._session
        with native_output() as log:
            inp = interp.getSessionInput(session)
            interp.resizeTensor(inp, shape)
            interp.resizeSession(session)
        got = tuple(int(d) for d in interp.getSessionInput(session).getShape())
        if got != tuple(shape):
            raise ZooError(f"MNN cannot resize {self.path.name} to input {shape} -- MNN: {tail(log[0])}")
        self._input_shape = got

    def _run_one(self, sample: np.ndarray) -> dict[str, np.ndarray]:
        """One (1, C, H, W) sample through the session (no output capture:
        the hot path stays cheap; the probe run at load time captures MNN's log)."""
        MNN = self._MNN
        interp, session = self._interp, self._session
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        host = MNN.Tensor(sample.shape, MNN.Halide_Type_Float, sample, MNN.Tensor_DimensionType_Caffe)
        if not interp.getSessionInput(session).copyFrom(host):
            raise self._fail("the session did not accept the input (unsupported model or op?)")
        code = interp.runSession(session)
        if code != 0:
            raise self._fail(f"runSession returned error code {code}")
        results: dict[str, np.ndarray] = {}
        for name, t in interp.getSessionOutputAll(session).items():
            shape = tuple(int(d) for d in t.getShape())
            if not shape or min(shape) <= 0:
                raise self._fail(f"output {name!r} has an empty shape {shape}")
            out = MNN.Tensor(shape, MNN.Halide_Type_Float, np.zeros(shape, np.float32), MNN.Tensor_DimensionType_Caffe)
            if not t.copyToHostTensor(out):
                raise self._fail(f"cannot read output {name!r}")
            arr = np.array(out.getNumpyData(), dtype=np.float32, copy=True).reshape(shape)
            if not np.isfinite(arr).all():
                raise self._fail(f"output {name!r} contains NaN/inf")
            results[name] = arr
        if not results:
            raise self._fail("the model produced no outputs")
        return results

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run (N, C, H, W) float32 input; returns {output name: (N, ...) array}."""
        if self._session is None:
            raise ZooError(f"MnnNet({self.path.name}) is not open: use `with MnnNet(...) as net:`")
        if not isinstance(x, np.ndarray):
            raise ZooError(f"input must be a numpy array, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[0] < 1:
            raise ZooError(f"input must be (N, C, H, W) with N >= 1, got shape {x.shape}")
        if x.shape[1] != self._input_shape[1]:
            raise ZooError(f"{self.path.name} expects {self._input_shape[1]} channels, got {x.shape[1]}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ZooError(f"input must be a float array (preprocessed), got {x.dtype}")
        want = (1,) + tuple(int(d) for d in x.shape[1:])
        if want != self._input_shape:
            self._resize(want)
        per_sample = [self._run_one(x[i : i + 1]) for i in range(x.shape[0])]
        return {name: np.concatenate([r[name] for r in per_sample], axis=0) for name in per_sample[0]}


class MnnTap(Tap):
    """Every tensor of an .mnn model in MNN: the model loaded as a module whose outputs are all its
    tensors (``MNN.nn.load_module_from_file`` with every variable name), on the CPU backend with the
    settings of `MnnNet` (fp32 "high" precision, Winograd memory level 0). MNN keeps the ONNX tensor
    names, and names a fused group's output (Conv+ReLU, Add+ReLU) by its last ONNX tensor, so the
    names map as ONNX names do."""

    name = "mnn"

    def __init__(self, meta, path, threads: int = 1):
        super().__init__(meta, threads)
        self.path = Path(path)

    def _load(self) -> None:
        existing_file(self.path, "MNN model")
        with native_output() as log:
            MNN = self._MNN = import_mnn()
            F = MNN.expr
            try:
                variables = F.load_as_dict(str(self.path))
                self.inputs = [n for n, v in variables.items() if v.op_type == "Input"]
                self.names = [n for n, v in variables.items() if v.op_type not in ("Input", "Const")]
                rt = MNN.nn.create_runtime_manager(({"backend": "CPU", "precision": "high", "numThread": self.threads},))
                rt.set_hint(_HINT_WINOGRAD_MEMORY_LEVEL, 0)
                self.module = MNN.nn.load_module_from_file(str(self.path), self.inputs, self.names, runtime_manager=rt)
                err = ""
            except Exception as exc:  # noqa: BLE001 - MNN raises many types
                self.module, err = None, str(exc)
        if self.module is None or len(self.inputs) != 1:
            raise ZooError(f"MNN cannot expose the tensors of {self.path.name}: "
                           f"{err or f'{len(self.inputs)} inputs'} -- MNN: {tail(log[0])}".rstrip())

    def _unload(self) -> None:
        self.module = None

    def _tensors(self, x):
        F = self._MNN.expr
        outs = self.module.forward([F.const(x, list(x.shape), F.NCHW)])
        res = []
        for name, v in zip(self.names, outs):
            if v.data_format == F.NC4HW4:
                v = F.convert(v, F.NCHW)
            a = np.array(v.read(), dtype=np.float32, copy=True)
            res.append((name, a.reshape(v.shape) if a.size else a))
        return res

    def origin(self, name: str):
        return onnx_origin(name)
