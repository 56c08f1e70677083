"""Hypothesis settings shared by the fuzz tests: a fixed seed and a small budget by default (CI),
scaled by ZOO_FUZZ_EXAMPLES and randomised by ZOO_FUZZ_SEED=random for a long campaign (scripts/fuzz.sh)."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("ZOO_FUZZ_EXAMPLES", "1") or 1))
RANDOM = os.environ.get("ZOO_FUZZ_SEED", "") == "random"


def fuzz(max_examples: int, **kw):
    """``@fuzz(n)``: n examples (x ZOO_FUZZ_EXAMPLES), derandomized unless ZOO_FUZZ_SEED=random."""
    return settings(max_examples=max_examples * SCALE, deadline=None, derandomize=not RANDOM, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], **kw)
