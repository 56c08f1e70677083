"""Where a worker's time goes (`zoo export --profile`): named phases, summed per process.

    with phase("quantization"):
        ...
    took = take()   # {"quantization": 12.3, ...} seconds, and the record starts again

Phases may nest (an exporter's "quantization" inside the worker's "export"); the reader of the
record subtracts what it needs. Nothing here changes what is computed or written.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

_PHASES: dict[str, float] = {}


@contextmanager
def phase(name: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        _PHASES[name] = _PHASES.get(name, 0.0) + time.perf_counter() - t


def take() -> dict[str, float]:
    out = {k: round(v, 4) for k, v in _PHASES.items()}
    _PHASES.clear()
    return out
