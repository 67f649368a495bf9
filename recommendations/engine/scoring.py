"""Scoring every item for one user in one vectorised step, and top N."""

import numpy as np


def score_items(item_factors, item_bias, global_mean, user_factors, user_bias):
    """Predicted preference of one user for every item, as one array."""
    # In place: at a million items each temporary array is 8 MB to write.
    scores = item_factors @ user_factors
    scores += item_bias
    scores += global_mean + user_bias
    return scores


def top_n(scores, n, excluded=None):
    """Indices of the n best scores, best first, skipping excluded indices.

    `excluded` is a boolean mask or an index array over `scores`; an
    item scored -inf is never returned either.
    """
    if excluded is not None:
        scores = scores.copy()
        scores[excluded] = -np.inf
    n = min(n, len(scores))
    if n <= 0:
        return np.empty(0, dtype=np.intp)

    # The n largest sit past the kth place: no negated copy to partition.
    kth = len(scores) - n
    best = np.argpartition(scores, kth)[kth:]
    # Fewer than n allowed: the -inf ones made up the numbers.
    best = best[scores[best] > -np.inf]
    return best[np.argsort(-scores[best], kind="stable")]


def predict_pairs(artifact, user_index, item_index, clip=True):
    """Predicted ratings for (user, item) index pairs; -1 marks an unknown id.

    An unknown user or item contributes no bias and no factors, which is
    how Surprise's SVD estimates a pair it has not seen.
    """
    known_user = user_index >= 0
    known_item = item_index >= 0
    both = known_user & known_item

    estimate = np.full(len(user_index), artifact.global_mean, dtype=np.float64)
    estimate[known_user] += artifact.user_bias[user_index[known_user]]
    estimate[known_item] += artifact.item_bias[item_index[known_item]]

    users = artifact.user_factors[user_index[both]]
    items = artifact.item_factors[item_index[both]]
    estimate[both] += np.einsum("ij,ij->i", users, items)

    if clip:
        low, high = artifact.rating_scale
        np.clip(estimate, low, high, out=estimate)
    return estimate
