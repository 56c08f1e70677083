"""Targets whose runtime crashes or hangs when it opens a file, loaded through ZOO_TARGET_PLUGINS:
what a native runtime does with a hostile file, on demand (tests/targets/test_hostile_artifacts.py)."""
from __future__ import annotations

import os
import signal
import time

from zoo.exporters.base import Target
from zoo.core.runtime import Runner


class _Opens(Runner):
    def __init__(self, meta, action):
        super().__init__(meta)
        self.action = action

    def _load(self):
        self.action()

    def _run(self, x):
        raise AssertionError("never reached")


class _Hostile(Target):
    precisions = ("fp32",)
    heads = ("raw",)
    action = staticmethod(lambda: None)

    def make_runner(self, runtime, primary, meta, threads):
        return _Opens(meta, self.action)


class SegvTarget(_Hostile):
    name = "segv"
    suffixes = (".segv",)
    runtimes = ("segvrt",)
    action = staticmethod(lambda: os.kill(os.getpid(), signal.SIGSEGV))


class AbortTarget(_Hostile):
    name = "abort"
    suffixes = (".abort",)
    runtimes = ("abortrt",)
    action = staticmethod(os.abort)


class HangTarget(_Hostile):
    name = "hang"
    suffixes = (".hang",)
    runtimes = ("hangrt",)
    action = staticmethod(lambda: time.sleep(3600))
