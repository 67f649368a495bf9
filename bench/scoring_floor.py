"""Scoring one user against the memory-bandwidth floor.

The served path, `score_items` and `top_n` for a top 10, against a bare
numpy matrix-vector product of the same size: k = 100 float32 factors over
every item. Beside them, for large catalogs, the approximate index
(recommendations/engine/ann.py) on the same factors: its build time, its
time per user and its recall against the exact top 10. No Django.
"""

import time

import numpy as np
from harness import ROOT  # noqa: F401  (puts the project on sys.path)

from recommendations.engine.ann import ApproximateIndex
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


def random_items(n_items, rng):
    """Item factors and biases drawn as Surprise's SVD starts them."""
    item_factors = rng.standard_normal((n_items, FACTORS), dtype=np.float32) * 0.1
    item_bias = rng.standard_normal(n_items, dtype=np.float32) * 0.1
    return item_factors, item_bias


def measure_scoring(n_items, runs, seed=0):
    """Milliseconds per user for the served path and for the bare product."""
    rng = np.random.default_rng(seed)
    item_factors, item_bias = random_items(n_items, rng)
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


def measure_approximate(
    n_items, n_users, ef_searches, ef_construction, threads=1, seed=0
):
    """Build seconds, then per efSearch: ms per user for a top 10 and its
    recall against the exact top 10, over the same users.

    The factors are those measure_scoring times exact scoring on. Drawn
    at random, they are the hard case for a graph index: no direction
    stands out, so the best items of a user are scattered over the graph.
    """
    rng = np.random.default_rng(seed)
    item_factors, item_bias = random_items(n_items, rng)
    users = rng.standard_normal((n_users, FACTORS), dtype=np.float32) * 0.1

    started = time.perf_counter()
    index = ApproximateIndex(
        item_factors, item_bias, ef_construction=ef_construction, threads=threads
    )
    build_seconds = time.perf_counter() - started
    exact = [set(_exact_top_10(item_factors, item_bias, user)) for user in users]

    searches = []
    for ef_search in ef_searches:
        index.ef_search = ef_search
        query_ms, hits = [], 0
        for user, best in zip(users, exact, strict=True):
            started = time.perf_counter()
            found = index.top_n(user, 10)
            query_ms.append((time.perf_counter() - started) * 1e3)
            hits += len(best.intersection(found.tolist()))
        recall = hits / (10 * n_users)
        searches.append(
            {"ef_search": ef_search, "query_ms": query_ms, "recall_at_10": recall}
        )
    return {
        "items": n_items,
        "users": n_users,
        "threads": threads,
        "m": index.m,
        "ef_construction": index.ef_construction,
        "build_seconds": build_seconds,
        "searches": searches,
    }


def _exact_top_10(item_factors, item_bias, user):
    return top_n(score_items(item_factors, item_bias, 0.0, user, 0.0), 10).tolist()
