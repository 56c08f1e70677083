"""OpenVINO without usage data: the one way this package imports openvino and nncf.

OpenVINO's model conversion (``openvino.tools.ovc``) and NNCF report usage through the
``openvino-telemetry`` package, which is installed with them and, unless a consent file in the home
folder says otherwise, sends events to an analytics service from a child process. Both libraries
fall back to a no-op stub when that package cannot be imported, so this process makes it
unimportable (``sys.modules[name] = None``) before openvino or nncf is first imported: nothing is
sent, no consent or client-id file is written in the home folder, and no environment variable or
file outside the process is needed. ``tests/targets/test_no_network.py`` audits every process of
an export.
"""
from __future__ import annotations

import logging
import sys

from zoo.core.errors import ZooError

#: the modules blocked: importing them raises ImportError, the libraries use their stubs
BLOCKED = ("openvino_telemetry", "openvino_telemetry.backend", "openvino_telemetry.backend.backend_ga4")


def block_telemetry() -> None:
    """Make the telemetry package unimportable in this process. Refuses (ZooError) when it is
    already imported: a tool that imported it first has its sender set up already."""
    loaded = sys.modules.get("openvino_telemetry")
    if loaded is not None:
        raise ZooError("openvino_telemetry was imported before ultraface-zoo could turn it off; "
                       "run the OpenVINO target in a process of its own (zoo export does)")
    for name in BLOCKED:
        sys.modules[name] = None  # type: ignore[assignment]


def telemetry_blocked() -> bool:
    return all(name in sys.modules and sys.modules[name] is None for name in BLOCKED)


def import_openvino(strict: bool = True):
    """``openvino``, with telemetry blocked first (``import openvino`` already imports the telemetry
    package, through its model converter). ``strict=False`` (running a model: the runtime itself
    sends nothing) accepts a process where it was imported already."""
    if not telemetry_blocked() and (strict or "openvino_telemetry" not in sys.modules):
        block_telemetry()
    import openvino  # optional: the `openvino` extra

    return openvino


def import_nncf():
    """``nncf``, with telemetry blocked first (NNCF reports through the same package)."""
    import_openvino()
    import nncf  # optional: the `openvino` extra

    logging.getLogger("nncf").setLevel(logging.WARNING)
    return nncf
