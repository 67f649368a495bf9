"""Scoring one user against the memory-bandwidth floor.

The served path, `score_items` and `top_n` for a top 10, against a bare
numpy matrix-vector product of the same size: k = 100 float32 factors over
every item. Pure numpy, no Django.
"""

import time

import numpy as np
from harness import ROOT  # noqa: F401  (puts the project on sys.path)

from recommendations.engine.scoring import score_items, top_n

FACTORS = 100
# Each timing is repeated until it has taken this long, so that a small
# catalog's microseconds are not lost in the clock's resolution.
MIN_SECONDS = 0.05
MAX_CALLS = 10_000


def _per_call(function):
    calls, started = 0, time.perf_counter()
    while calls < MAX_CALLS:
        function()
        calls += 1
        if time.perf_counter() - started >= MIN_SECONDS:
            break
    return (time.perf_counter() - started) / calls


def measure_scoring(n_items, runs, seed=0):
    """Milliseconds per user for the served path and for the bare product."""
    rng = np.random.default_rng(seed)
    item_factors = rng.standard_normal((n_items, FACTORS), dtype=np.float32) * 0.1
    item_bias = rng.standard_normal(n_items, dtype=np.float32) * 0.1
    user = rng.standard_normal(FACTORS, dtype=np.float32) * 0.1
    user_bias = np.float32(0.05)

    def served():
        scores = score_items(item_factors, item_bias, 3.5, user, user_bias)
        return top_n(scores, 10)

    def floor():
        return item_factors @ user

    served_ms, floor_ms = [], []
    for _ in range(runs):
        # Interleaved, so that a noisy neighbour slows both alike.
        served_ms.append(_per_call(served) * 1e3)
        floor_ms.append(_per_call(floor) * 1e3)
    return {"items": n_items, "served_ms": served_ms, "floor_ms": floor_ms}
