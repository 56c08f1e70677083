"""Hypothesis settings shared by the fuzz tests: a fixed seed (0) and a small budget by default (CI),
scaled by ZOO_FUZZ_EXAMPLES; ZOO_FUZZ_SEED=random draws a seed (shown in pytest's header),
ZOO_FUZZ_SEED=<number> replays one (scripts/fuzz.sh runs a long campaign)."""
from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, seed, settings

SCALE = EXAMPLES = max(1, int(os.environ.get("ZOO_FUZZ_EXAMPLES", "1") or 1))
_SEED = os.environ.get("ZOO_FUZZ_SEED", "").strip() or "0"
RANDOM = _SEED == "random"
SEED = random.SystemRandom().randrange(2**32) if RANDOM else int(_SEED)


def fuzz(max_examples: int, scale: bool = True, **kw):
    """``@fuzz(n)``: n examples (x ZOO_FUZZ_EXAMPLES unless ``scale=False``), seeded with SEED."""
    s = settings(max_examples=max(1, max_examples * (SCALE if scale else 1)), deadline=None, database=None,
                 suppress_health_check=list(HealthCheck), **kw)

    def decorate(fn):
        return seed(SEED)(s(fn))

    return decorate
