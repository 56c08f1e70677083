"""`NcnnNet`: one ncnn network on the CPU, loaded on ``__enter__`` and released on ``__exit__``."""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from zoo.exporters.ncnn.param import input_blobs, int8_layers, output_blobs, read_param
from zoo.core.errors import ZooError
from zoo.core.model.layers import onnx_origin
from zoo.core.runtime import Tap


class NcnnNet:
    """``with NcnnNet(param, bin, int8=True) as net: outs = net.infer(x)`` with x (N,3,H,W) float32.

    ``outs`` maps each output blob name to an array with the batch dim restored.
    ``input_shape`` (C,H,W) -- or, by default, the ``0=w 1=h 2=c`` of the Input layer that
    :func:`zoo.exporters.ncnn.convert.onnx_to_ncnn` records -- makes ``infer`` refuse other sizes
    (ncnn would not).  fp16 storage/arithmetic are off unless ``fp16=True``; int8 inference is
    on only with ``int8=True`` (a file holding int8 weights refuses to load without it, since
    ncnn would otherwise read the int8 bytes as float).  The constructor only records its
    arguments; the files are checked and loaded on ``__enter__``.

    ``options``: how an app would run it instead. ``{"defaults": True}`` leaves every precision and
    layout option (fp16 packing, storage and arithmetic, int8, packing layout) at the library's own
    defaults, as an app that sets nothing gets them: on an ARMv8.2 CPU ncnn then stores and computes in
    fp16. Other keys are ncnn ``Option`` flags set on top (``{"defaults": True, "use_fp16_arithmetic":
    False}``). `settings()` tells what the loaded net runs with.
    """

    def __init__(self, param_path, bin_path, *, threads: int = 1, fp16: bool = False, int8: bool = False,
                 input_blob: str = "input", output_blobs: Iterable[str] | None = None,
                 input_shape: Sequence[int] | None = None, lightmode: bool = True, free_size: bool = False,
                 options: dict | None = None):
        self.param_path, self.bin_path = str(param_path), str(bin_path)
        self.threads, self.fp16, self.int8 = int(threads), bool(fp16), bool(int8)
        self.input_blob = input_blob
        self.output_blobs = list(output_blobs) if output_blobs is not None else None
        self.input_shape = tuple(int(v) for v in input_shape)[-3:] if input_shape is not None else None
        #: a dynamic file (`zoo export --dynamic`): the Input layer's size is ncnn's shape hint, not a limit
        self.free_size = bool(free_size)
        self.lightmode = bool(lightmode)
        self.options = dict(options or {})
        for k, v in self.options.items():
            if not (k == "defaults" or k.startswith("use_")) or not isinstance(v, bool):
                raise ZooError(f"ncnn option {k!r}: expected `defaults` or a use_* flag set to true/false")
        self._net = None

    def __enter__(self) -> "NcnnNet":
        if self._net is None:
            self._check_files()
            self._net = self._load()
        return self

    def __exit__(self, *exc) -> None:
        net, self._net = self._net, None
        if net is not None:
            net.clear()

    def _check_files(self) -> None:
        """Validate the pair against the arguments; fill in the input shape and output blobs."""
        for p in (self.param_path, self.bin_path):
            if not os.path.isfile(p):
                raise ZooError(f"ncnn file not found: {p}")
        layers = read_param(self.param_path)
        quantized = int8_layers(layers)
        if quantized and not self.int8:
            raise ZooError(f"{self.param_path} holds int8 layers ({len(quantized)}); load it with int8=True")
        blobs = {b for ly in layers for b in ly.bottoms + ly.tops}
        if self.input_blob not in blobs:
            raise ZooError(f"input blob {self.input_blob!r} not in {self.param_path}; inputs are {input_blobs(layers)}")
        if self.input_shape is None:
            # (C,H,W) from the Input layer's 2=c 1=h 0=w when the file records it
            src = next((ly for ly in layers if ly.type == "Input" and self.input_blob in ly.tops), None)
            if src is not None and src.geti(0) > 0 and src.geti(1) > 0 and src.geti(2) > 0:
                self.input_shape = (src.geti(2), src.geti(1), src.geti(0))
        if self.output_blobs is None:
            self.output_blobs = output_blobs(layers)
        missing = [b for b in self.output_blobs if b not in blobs]
        if missing or not self.output_blobs:
            raise ZooError(f"output blobs {missing or self.output_blobs} not in {self.param_path}; "
                           f"outputs are {output_blobs(layers)}")

    def _load(self):
        try:
            import ncnn  # optional runtime: imported when used
        except ImportError as e:
            raise ZooError("the 'ncnn' Python package is not installed") from e
        net = ncnn.Net()
        o = net.opt
        o.use_vulkan_compute = False
        o.num_threads = self.threads
        o.lightmode = self.lightmode
        if not self.options.get("defaults"):  # ours: exactly the file's precision
            o.use_fp16_packed = self.fp16
            o.use_fp16_storage = self.fp16
            o.use_fp16_arithmetic = self.fp16
            o.use_bf16_storage = False
            o.use_int8_inference = self.int8
            o.use_int8_packed = self.int8
            o.use_int8_storage = self.int8
            o.use_int8_arithmetic = self.int8
        for k, v in self.options.items():
            if k != "defaults":
                if not hasattr(o, k):
                    raise ZooError(f"ncnn {getattr(ncnn, '__version__', '')} has no option {k!r}")
                setattr(o, k, v)
        self._fp16_cpu = bool(getattr(ncnn, "cpu_support_arm_asimdhp", lambda: 0)())
        rc = net.load_param(self.param_path)
        if rc != 0:
            net.clear()
            raise ZooError(f"ncnn load_param failed ({rc}) for {self.param_path}")
        rc = net.load_model(self.bin_path)
        if rc != 0:
            net.clear()
            raise ZooError(f"ncnn load_model failed ({rc}) for {self.bin_path}")
        self._mat = ncnn.Mat
        return net

    def settings(self) -> dict:
        """The loaded net's options (every ``use_*`` flag, threads, light mode) and the reduced precision
        they give on this CPU: ncnn's ARM kernels store (and, with ``use_fp16_arithmetic``, compute)
        in fp16 when ``use_fp16_storage`` is on and the CPU has fp16 arithmetic (ARMv8.2 asimdhp, as
        ncnn itself detects it); elsewhere the fp16 flags change nothing."""
        if self._net is None:
            return {}
        o = self._net.opt
        flags = {k: bool(getattr(o, k)) for k in sorted(dir(o)) if k.startswith("use_") and not k.startswith("use_vulkan")}
        opts = {"mode": "library defaults" if self.options.get("defaults") else "as the file's precision",
                **flags, "num_threads": int(o.num_threads), "lightmode": bool(o.lightmode)}
        storage = self._fp16_cpu and flags.get("use_fp16_storage", False)
        reduced = None
        if storage:
            reduced = "fp16 storage and arithmetic" if flags.get("use_fp16_arithmetic") else "fp16 storage"
        return {"options": opts, "reduced": reduced, "cpu_fp16": self._fp16_cpu}

    def infer(self, x: np.ndarray, blobs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Run every sample of x (N,C,H,W) float32; returns {blob: (N, *blob_shape)}.

        ``blobs`` defaults to the output blobs; intermediate blob names work too.
        """
        if self._net is None:
            raise ZooError("NcnnNet.infer called outside `with NcnnNet(...) as net:`")
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[0] < 1:
            raise ZooError(f"ncnn input must be (N,C,H,W), got shape {x.shape}")
        if self.input_shape is not None and not self.free_size and tuple(x.shape[1:]) != self.input_shape:
            raise ZooError(f"this ncnn model takes input (N,{','.join(map(str, self.input_shape))}), "
                           f"got {tuple(x.shape)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        names = list(blobs) if blobs is not None else self.output_blobs
        per: dict[str, list[np.ndarray]] = {b: [] for b in names}
        for i in range(x.shape[0]):
            # batch_index picks one (C,H,W) sample out of the 4-D array (pnnx's own recipe);
            # a plain 3-D array does not map correctly in this ncnn build.
            try:
                mat = self._mat(x[i:i + 1], batch_index=0).clone()
            except TypeError:  # ncnn's Python bindings before batch_index (2024 and older): the 3-D (C,H,W) form
                mat = self._mat(np.ascontiguousarray(x[i])).clone()
            ex = self._net.create_extractor()
            try:
                rc = ex.input(self.input_blob, mat)
                if rc != 0:
                    raise ZooError(f"ncnn rejected input blob {self.input_blob!r} ({rc})")
                for b in names:
                    rc, m = ex.extract(b)
                    if rc != 0:
                        raise ZooError(f"ncnn extract of blob {b!r} failed ({rc}); input shape {x.shape[1:]}")
                    if m.empty():
                        raise ZooError(f"ncnn produced an empty blob {b!r}")
                    per[b].append(np.array(m.numpy(), dtype=np.float32, copy=True))
            finally:
                ex.clear()
        return {b: np.stack(v) for b, v in per.items()}


class NcnnTap(Tap):
    """Every blob of an ncnn model (``extract`` of each layer's top blobs, light mode off so no blob is
    recycled before it is read). pnnx numbers the blobs; which ONNX tensor a blob holds was recorded
    at export in the metadata (``io["tensors"]``, zoo.exporters.ncnn.convert.onnx_tensor_names)."""

    name = "ncnn"

    def __init__(self, meta, primary, threads: int = 1):
        super().__init__(meta, threads)
        self.primary = primary
        io = meta.io or {}
        if not isinstance(io.get("tensors"), dict):
            raise ZooError(f"{primary}: its metadata records no blob-to-tensor mapping (io.tensors): the artifact "
                           "predates `zoo diff`; export it again")
        self.onnx_names = io["tensors"]
        self.net = NcnnNet(primary, primary.with_suffix(".bin"), threads=threads, int8=bool(io.get("int8")),
                           input_blob=io.get("input_blob", "in0"), lightmode=False,
                           output_blobs=list((io.get("output_blobs") or {"scores": "out0", "boxes": "out1"}).values()))

    def _load(self) -> None:
        self.net.__enter__()
        layers = read_param(self.net.param_path)
        self.blobs = [t for ly in layers if ly.type != "Input" for t in ly.tops]

    def _unload(self) -> None:
        self.net.__exit__(None, None, None)

    def _tensors(self, x):
        res = self.net.infer(x, blobs=self.blobs)
        return [(b, res[b]) for b in self.blobs]

    def origin(self, name: str):
        return onnx_origin(self.onnx_names.get(name, ""))
