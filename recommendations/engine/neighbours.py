"""Item-to-item neighbours from co-occurrence, computed at train time."""

import numpy as np
from scipy import sparse


def cooccurrence_neighbours(user_index, item_index, n_items, k=50):
    """The k items most often seen by the same users, for every item.

    Similarity is the cosine of two items' user sets: co-occurrences over
    the square root of the product of their counts. Returns two n_items x k
    arrays, neighbour indices and similarities (0 where there are fewer).
    """
    n_users = int(user_index.max()) + 1 if len(user_index) else 0
    ones = np.ones(len(user_index), dtype=np.float32)
    seen = sparse.csr_matrix((ones, (user_index, item_index)), (n_users, n_items))
    seen.data[:] = 1.0  # a user who saw an item twice still counts once

    together = (seen.T @ seen).tocsr()
    counts = np.sqrt(together.diagonal())
    counts[counts == 0] = 1.0
    together.setdiag(0)
    together.eliminate_zeros()
    cosine = sparse.diags(1 / counts) @ together @ sparse.diags(1 / counts)

    return _top_k_per_row(cosine.tocsr(), k)


def _top_k_per_row(matrix, k):
    n_items = matrix.shape[0]
    indices = np.zeros((n_items, k), dtype=np.int32)
    similarities = np.zeros((n_items, k), dtype=np.float32)

    for row in range(n_items):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        columns, values = matrix.indices[start:end], matrix.data[start:end]
        if len(values) > k:
            keep = np.argpartition(-values, k - 1)[:k]
            columns, values = columns[keep], values[keep]
        order = np.argsort(-values, kind="stable")
        indices[row, : len(order)] = columns[order]
        similarities[row, : len(order)] = values[order]
    return indices, similarities


def neighbour_scores(indices, similarities, items, weights, n_items):
    """How strongly each item is a neighbour of the given weighted items."""
    weights = np.asarray(weights, dtype=np.float64)
    contribution = similarities[items] * weights[:, None]
    return np.bincount(
        indices[items].ravel(), weights=contribution.ravel(), minlength=n_items
    )
