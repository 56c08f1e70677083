"""One runner protocol for every runtime.

    with runner:
        out = runner.infer(x)   # x: (N, 3, H, W) float32, preprocessed

``out`` is canonical whatever the runtime, layout, output names or head:
``{"scores": (N, P, K), "boxes": (N, P, 4) corners in [0, 1]}`` plus
``"locations"`` (N, P, 4) raw offsets when the artifact has the raw head.
Runtimes are imported lazily, so a missing optional runtime only matters
when its runner is used.
"""
from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from zoo.core.errors import ZooError
from zoo.core.meta import ArtifactMeta
from zoo.core.model import priors as P
from zoo.core.model.processing import decode


class _Lifecycle(abc.ABC):
    """Load on ``__enter__``, release on ``__exit__``: the lifecycle every `Runner` and `Tap` shares."""

    def __init__(self, meta: ArtifactMeta, threads: int = 1):
        self.meta = meta
        self.threads = max(1, int(threads))
        self._active = False

    def __enter__(self):
        if not self._active:
            self._load()
            self._active = True
        return self

    def __exit__(self, *exc):
        self._unload()
        self._active = False
        return False

    @abc.abstractmethod
    def _load(self) -> None: ...

    def _unload(self) -> None:
        pass


class Runner(_Lifecycle):
    """Base runner: subclasses implement ``_load`` and ``_run``."""

    name = "runner"

    def __init__(self, meta: ArtifactMeta, threads: int = 1):
        super().__init__(meta, threads)
        self._priors: dict[tuple[int, int], np.ndarray] = {}
        self._size = tuple(meta.input_size)  # (W, H) of the batch being decoded

    @abc.abstractmethod
    def _run(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Native outputs for an NCHW float batch, as (name, array) pairs."""

    def settings(self) -> dict:
        """What the runtime runs with, once loaded, as far as it tells: ``{"options": {...}, "reduced":
        "fp16 ..." or None}``, where ``reduced`` names a reduced-precision arithmetic or storage it chose
        for this CPU (ncnn's fp16 on ARMv8.2, MNN's ``precision: low``). {} when it says nothing."""
        return {}

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if not self._active:
            raise RuntimeError(f"{type(self).__name__}.infer called outside `with runner:`")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] < 1:
            raise ZooError(f"runner input must be (N, 3, H, W) with N >= 1, got {x.shape}")
        size = (int(x.shape[3]), int(x.shape[2]))
        if self.meta.is_dynamic:  # any allowed size: priors (and their count) for the actual one
            self.meta.size_for(*size)
            self._size = size
        return self.canonical(self._run(x), batch=x.shape[0])

    # ------------------------------------------------------------------ canonical form
    @property
    def priors(self) -> np.ndarray:
        """The priors of the size being decoded (the artifact's own, or a dynamic batch's actual size)."""
        if self._size not in self._priors:
            self._priors[self._size] = P.generate_priors(*self._size)
        return self._priors[self._size]

    def canonical(self, outputs: list[tuple[str, np.ndarray]], batch: int) -> dict[str, np.ndarray]:
        """Pick scores and boxes by shape (by name only when K == 4), decode a raw head."""
        if self.meta.head == "nms":
            return {"detections": [np.asarray(o, dtype=np.float32).reshape(-1, 6) for _, o in outputs]}
        p, k = P.prior_count(*self._size) if self.meta.is_dynamic else self.meta.prior_count, self.meta.num_classes
        flat = []
        for name, arr in outputs:
            a = np.asarray(arr, dtype=np.float32)
            if a.size != batch * p * k and a.size != batch * p * 4:
                continue
            flat.append((name, a))
        by_name = dict(flat)
        if k != 4:
            scores = next((a for _, a in flat if a.size == batch * p * k), None)
            boxes = next((a for _, a in flat if a.size == batch * p * 4), None)
        else:  # ambiguous by shape: output names, then order
            scores = by_name.get("scores", flat[0][1] if flat else None)
            boxes = by_name.get("boxes", flat[1][1] if len(flat) > 1 else None)
        scores = scores.reshape(batch, p, k) if scores is not None else None
        boxes = boxes.reshape(batch, p, 4) if boxes is not None else None
        if scores is None or boxes is None:
            shapes = ", ".join(f"{n}{tuple(np.shape(a))}" for n, a in outputs) or "none"
            raise ZooError(
                f"{self.name}: outputs do not match the model (expected scores ({batch},{p},{k}) and boxes ({batch},{p},4)); got {shapes}"
            )
        if self.meta.head == "raw":
            return {"scores": scores, "boxes": decode(boxes, self.priors), "locations": boxes}
        return {"scores": scores, "boxes": boxes}


class TorchRunner(Runner):
    """The PyTorch reference, from a resolved model."""

    name = "pytorch"

    def __init__(self, meta: ArtifactMeta, state_dict: dict, threads: int = 1):
        super().__init__(meta, threads)
        self.state_dict = state_dict

    def _load(self) -> None:
        import torch  # heavy: only the PyTorch reference needs it

        from zoo.core.model.nets import UltraFace, load_state_dict_strict  # heavy: torch

        torch.set_num_threads(self.threads)
        self.net = UltraFace(self.meta.arch, self.meta.num_classes, *self.meta.input_size, head=self.meta.head)
        load_state_dict_strict(self.net, self.state_dict)
        self.net.eval()

    def _run(self, x):
        import torch  # heavy: loaded by _load already

        with torch.inference_mode():
            s, b = self.net(torch.from_numpy(x))
        return [("scores", s.numpy()), ("boxes", b.numpy())]


class NativeRunner(Runner):
    """Adapts a runtime's own net class to the protocol.

    ``opener()`` returns an object usable as ``with net: net.infer(x) -> {name: array}``;
    ``layout="NHWC"`` feeds it channels-last input.
    """

    def __init__(self, meta: ArtifactMeta, opener, name: str, threads: int = 1, layout: str = "NCHW"):
        super().__init__(meta, threads)
        self.opener, self.name, self.layout = opener, name, layout
        self.net = None

    def _load(self) -> None:
        self.net = self.opener()
        self.net.__enter__()

    def _unload(self) -> None:
        if self.net is not None:
            self.net.__exit__(None, None, None)
            self.net = None

    def _run(self, x):
        if self.layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return list(self.net.infer(x).items())

    def settings(self) -> dict:
        return self.net.settings() if self.net is not None and hasattr(self.net, "settings") else {}


class Tap(_Lifecycle):
    """Every intermediate tensor of an artifact, run in its own runtime (for `zoo diff`)::

        with tap:
            pairs = tap.tensors(x)      # x: (1, 3, H, W) float32, preprocessed
            origin = tap.origin(name)   # where a tensor comes from, or None

    ``pairs`` are ``(runtime tensor name, array)`` in the runtime's execution order, batch first and
    NCHW whatever the runtime's layout (4-D tensors of an NHWC runtime are transposed). ``origin``
    is ``(PyTorch module path, kind)`` as zoo.core.model.layers defines it, read from the names the
    file carries or from the mapping recorded in its metadata at export time. Each format implements
    one beside its runner (``Target.make_tap``)."""

    name = "tap"
    layout = "NCHW"

    @abc.abstractmethod
    def _tensors(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Every intermediate tensor for one NCHW float sample (NHWC input already for an NHWC tap)."""

    @abc.abstractmethod
    def origin(self, name: str) -> tuple[str, str] | None: ...

    def tensors(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        if not self._active:
            raise RuntimeError(f"{type(self).__name__}.tensors called outside `with tap:`")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            raise ZooError(f"tap input must be (1, 3, H, W), got {x.shape}")
        if self.layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        out = []
        for name, a in self._tensors(x):
            a = np.asarray(a, dtype=np.float32)
            if self.layout == "NHWC" and a.ndim == 4:
                a = a.transpose(0, 3, 1, 2)
            out.append((name, a))
        return out
