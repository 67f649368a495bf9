"""Scoring every item for one user in one vectorised step, and top N."""

import numpy as np


def score_items(item_factors, item_bias, global_mean, user_factors, user_bias):
    """Predicted preference of one user for every item, as one array."""
    return item_factors @ user_factors + (item_bias + (global_mean + user_bias))


def top_n(scores, n, excluded=None):
    """Indices of the n best scores, best first, skipping excluded indices.

    `excluded` is a boolean mask or an index array over `scores`.
    """
    if excluded is not None:
        scores = scores.copy()
        scores[excluded] = -np.inf

    available = int(np.count_nonzero(scores > -np.inf))
    n = min(n, available)
    if n <= 0:
        return np.empty(0, dtype=np.intp)

    best = np.argpartition(-scores, n - 1)[:n]
    return best[np.argsort(-scores[best], kind="stable")]
