"""The usage reporting ("telemetry") of the libraries ultraface-zoo loads, and how each is kept off.

ultraface-zoo promises that no command reaches the network and none sends usage data. Two of the
libraries it loads report usage on their own unless told not to:

* **onnxruntime** (1.32 on Linux): a native 1DS client compiled into the library starts with the
  module's import (``import onnxruntime``, also done by onnxsim and by onnxruntime's quantizer) and,
  ~10 s later and then on a back-off, looks up and posts events to
  ``mobile.events.data.microsoft.com``; it also writes a device id and an event database under
  ``~/.cache/Microsoft/DeveloperTools/.onnxruntime``. Its switch, ``ORT_DISABLE_TELEMETRY=1``, is read
  by the native library, so it must be in the environment before the module is first imported:
  ``turn_off()`` sets it in ``os.environ`` when ``zoo`` itself is imported (``zoo/__init__.py``),
  before any of our modules can import onnxruntime, and every process zoo starts (workers, probes,
  `zoo compat` environments: ``zoo.core.isolation``) inherits it. ``disable_telemetry_events()``,
  onnxruntime's Python call, is made too where we import onnxruntime
  (``zoo.exporters.onnx.quiet``), but alone it does not stop that client (measured: the look-ups go on).
* **openvino-telemetry** (used by OpenVINO's model converter and by NNCF): Google Analytics events and
  a client id in ``~/intel``; made unimportable before openvino is imported, so both fall back to
  their no-op stubs (``zoo.exporters.openvino.quiet``).

Every other library zoo loads (torch, onnx, onnxsim, TensorFlow/LiteRT, MNN, ncnn/pnnx, OpenCV)
reports nothing that the OS-level audit of the test suite (``tests/osaudit.py``, every command run
under ``strace -f``) could see. Both libraries above also stay quiet by themselves when they detect a
CI job (``CI=true`` and the like); the audit removes those variables, so it sees a user's machine.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Reporter:
    """A library's usage reporting and the switch that keeps it off."""

    name: str
    contacts: str  # what it sends and where, and what it writes
    switch: str  # the switch
    how: str  # how zoo sets it, and where
    env: tuple[tuple[str, str], ...] = ()  # environment switches `turn_off` sets
    module: str | None = None  # the module whose import starts it (an environment switch must precede it)


REPORTERS: dict[str, Reporter] = {
    "onnxruntime": Reporter(
        name="onnxruntime",
        contacts="1DS usage events to mobile.events.data.microsoft.com (DNS look-ups from a native thread ~10 s "
                 "after `import onnxruntime`, then on a back-off); a device id and an event database in "
                 "~/.cache/Microsoft/DeveloperTools/.onnxruntime",
        switch="ORT_DISABLE_TELEMETRY=1 (read by the native library when it loads); "
               "onnxruntime.disable_telemetry_events()",
        how="zoo sets ORT_DISABLE_TELEMETRY=1 in os.environ when `zoo` is imported (zoo.core.telemetry.turn_off), "
            "before any onnxruntime import; every process zoo starts inherits it; zoo.exporters.onnx.quiet also "
            "calls disable_telemetry_events() where zoo imports onnxruntime",
        env=(("ORT_DISABLE_TELEMETRY", "1"),),
        module="onnxruntime",
    ),
    "openvino-telemetry": Reporter(
        name="openvino-telemetry",
        contacts="Google Analytics events from OpenVINO's model converter and NNCF; a client id and a consent "
                 "file in ~/intel",
        switch="the openvino_telemetry package unimportable (OpenVINO and NNCF then use their no-op stubs)",
        how="zoo.exporters.openvino.quiet blocks it (sys.modules) before openvino or nncf is first imported, "
            "in every process that loads them",
        module="openvino_telemetry",
    ),
}

#: the environment switches of every reporter
ENV: dict[str, str] = {k: v for r in REPORTERS.values() for k, v in r.env}

#: modules of an environment-switched reporter that were imported before `turn_off` ran in this process
#: (their switch came too late: the reporting may be on in this process)
_LOADED_BEFORE: set[str] = set()


def turn_off() -> None:
    """Set every environment switch in this process (inherited by the processes it starts). Called when
    ``zoo`` is imported; a library already imported by then is remembered (``in_effect`` says so)."""
    for r in REPORTERS.values():
        if r.env and r.module and r.module in sys.modules and any(os.environ.get(k) != v for k, v in r.env):
            _LOADED_BEFORE.add(r.module)
    os.environ.update(ENV)


def child_env(env: dict) -> dict:
    """``env`` for a process zoo starts, with every environment switch set (whatever ``env`` said)."""
    return {**env, **ENV}


def in_effect(name: str) -> bool:
    """Whether reporter ``name``'s switch is in effect in this process: its environment switch is set and
    came before the library's import; for openvino-telemetry, that the package is not loaded live here
    (zoo imports openvino and nncf only through its blocking ``quiet`` module)."""
    r = REPORTERS[name]
    if r.env:
        return all(os.environ.get(k) == v for k, v in r.env) and r.module not in _LOADED_BEFORE
    return sys.modules.get(r.module) is None if r.module else False


def describe(names) -> list[dict]:
    """The reporters ``names`` as JSON-ready dicts (for `zoo list --json`)."""
    return [{"name": n, "contacts": REPORTERS[n].contacts, "switch": REPORTERS[n].switch, "how": REPORTERS[n].how,
             "off": in_effect(n)} for n in names]
