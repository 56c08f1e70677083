"""onnxruntime without usage reporting: the one way this package imports onnxruntime.

onnxruntime 1.32's native telemetry client starts when the module is imported and reads its switch,
``ORT_DISABLE_TELEMETRY=1``, then; ``zoo.core.telemetry`` sets it when ``zoo`` is imported, before any
module of ours (or onnxsim, or the quantizer) can import onnxruntime. ``import_onnxruntime`` makes sure
the switch is in the environment when it imports the module first, and calls onnxruntime's own
``disable_telemetry_events()`` (the platform's telemetry events; not every release has it)."""
from __future__ import annotations

import os
import sys

from zoo.core.telemetry import REPORTERS


def import_onnxruntime():
    """``onnxruntime``, with its usage reporting off (see the module's docstring)."""
    if "onnxruntime" not in sys.modules:
        os.environ.update(dict(REPORTERS["onnxruntime"].env))
    import onnxruntime  # optional runtime: imported when used

    off = getattr(onnxruntime, "disable_telemetry_events", None)
    if off is not None:
        off()
    return onnxruntime
