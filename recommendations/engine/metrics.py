"""Offline ranking metrics for top-k recommendation lists, all in numpy.

The usual pipeline is `ranked_top_k` -> `hits_matrix` -> the per-user
metrics, or `summarise` for all of them at once. Every per-user metric
returns 0 for a user with no relevant test items instead of dividing by
zero, but such users carry no information about ranking quality: the
caller must leave them out of any average, as `summarise` does.
"""

import numpy as np
from scipy import sparse

PADDING = -1


def ranked_top_k(scores, excluded, k):
    """Indices of each user's k best allowed items, best first, -1 padded.

    `excluded` is a boolean mask shaped like `scores`, a sparse matrix whose
    nonzeros are excluded, or None. Excluded and NaN scores are never
    returned; a user with fewer than k allowed items gets -1 in the tail.
    Ties fall in no guaranteed order.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    scores = _without_excluded(scores, excluded)
    n_users, n_items = scores.shape
    top = np.full((n_users, k), PADDING, dtype=np.intp)

    shortlist = min(k, n_items)
    if shortlist == 0:
        return top

    # A partition is linear in n_items; only the k survivors get sorted.
    candidates = np.argpartition(-scores, shortlist - 1, axis=1)[:, :shortlist]
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.argsort(-candidate_scores, axis=1, kind="stable")
    best = np.take_along_axis(candidates, order, axis=1)

    # Disallowed items sort after every allowed one, so they form the tail.
    allowed = np.take_along_axis(scores, best, axis=1) > -np.inf
    top[:, :shortlist] = np.where(allowed, best, PADDING)
    return top


def _without_excluded(scores, excluded):
    scores = np.array(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be users x items, got shape {scores.shape}")
    if excluded is None:
        return scores

    if np.shape(excluded) != scores.shape:
        raise ValueError(f"excluded is {np.shape(excluded)}, scores {scores.shape}")
    if sparse.issparse(excluded):
        rows, columns = excluded.nonzero()
        scores[rows, columns] = -np.inf
    else:
        scores[np.asarray(excluded, dtype=bool)] = -np.inf
    return scores


def hits_matrix(top, relevant):
    """True where the recommended item top[u, j] is among u's relevant items.

    `relevant` is a sparse (n_users x n_items) matrix whose nonzeros are the
    test items; -1 padding is never a hit.
    """
    top = np.asarray(top)
    relevant = _relevance(relevant)
    n_users, n_items = relevant.shape
    if top.shape[0] != n_users:
        raise ValueError(f"top has {top.shape[0]} rows, relevant {n_users}")

    # One int64 key per (user, item) pair turns every lookup into a
    # single isin call instead of a loop over users.
    rows, columns = relevant.nonzero()
    relevant_keys = rows.astype(np.int64) * n_items + columns
    slot_rows = np.arange(n_users, dtype=np.int64)[:, None]
    slot_keys = slot_rows * n_items + top

    return np.isin(slot_keys, relevant_keys) & (top != PADDING)


def relevant_counts(relevant):
    """How many relevant test items each user has."""
    return np.diff(_relevance(relevant).indptr)


def _relevance(relevant):
    # A copy, because dropping stored zeros must not touch the caller's
    # matrix, and they would otherwise count as relevant items.
    relevant = sparse.csr_matrix(relevant, dtype=bool, copy=True)
    relevant.eliminate_zeros()
    return relevant


def precision_at_k(hits, k):
    """Share of the k slots that hold a relevant item; padding counts as a miss."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return _hit_counts(hits) / k


def recall_at_k(hits, n_relevant):
    """Share of each user's relevant items that reached the top k."""
    return _ratio(_hit_counts(hits), n_relevant)


def ndcg_at_k(hits, n_relevant):
    """DCG with binary gains and 1/log2(rank + 1) discounts, over the ideal DCG.

    The ideal list puts min(k, n_relevant) relevant items first.
    """
    hits = _as_hits(hits)
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts

    # ideal_dcg[n] is the DCG of n hits in the first n slots.
    ideal_dcg = np.concatenate([[0.0], np.cumsum(discounts)])
    best_possible = np.minimum(k, np.asarray(n_relevant, dtype=np.intp))
    return _ratio(dcg, ideal_dcg[best_possible])


def average_precision_at_k(hits, n_relevant):
    """Precision at each hit's rank, summed and divided by min(k, n_relevant)."""
    hits = _as_hits(hits)
    k = hits.shape[1]
    ranks = np.arange(1, k + 1)
    precision_at_rank = np.cumsum(hits, axis=1) / ranks

    summed = np.sum(precision_at_rank, axis=1, where=hits)
    return _ratio(summed, np.minimum(k, n_relevant))


def hit_rate(hits):
    """1.0 for a user with at least one relevant item in the top k, else 0.0."""
    return _as_hits(hits).any(axis=1).astype(np.float64)


def _as_hits(hits):
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2:
        raise ValueError(f"hits must be users x k, got shape {hits.shape}")
    return hits


def _hit_counts(hits):
    return _as_hits(hits).sum(axis=1).astype(np.float64)


def _ratio(numerator, denominator):
    # Users with nothing relevant score 0 here and are left out by the caller.
    numerator, denominator = np.broadcast_arrays(
        np.asarray(numerator, dtype=np.float64),
        np.asarray(denominator, dtype=np.float64),
    )
    result = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=result, where=denominator > 0)
    return result


def catalog_coverage(top, n_items):
    """Share of the catalog that appears in at least one top-k list."""
    if n_items <= 0:
        return 0.0
    recommended = np.unique(_recommended(top))
    return recommended.size / n_items


def novelty(top, item_popularity, n_users):
    """Mean self-information -log2(popularity / n_users) of recommended items.

    Popularity is the number of training users who interacted with an item;
    it is clipped at 1 so an item nobody saw scores as if one user had. An
    empty set of recommendations has novelty 0.
    """
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    recommended = _recommended(top)
    if recommended.size == 0:
        return 0.0

    popularity = np.asarray(item_popularity, dtype=np.float64)[recommended]
    share = np.maximum(popularity, 1.0) / n_users
    return float(np.mean(-np.log2(share)))


def _recommended(top):
    top = np.asarray(top)
    return top[top != PADDING]


def rating_errors(predicted, actual):
    """Root mean squared and mean absolute error of predicted ratings."""
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if predicted.shape != actual.shape or predicted.size == 0:
        raise ValueError("predicted and actual must be non-empty and equal in shape")

    errors = predicted - actual
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mae": float(np.mean(np.abs(errors))),
    }


def summarise(top, relevant, item_popularity, n_users, k):
    """Every metric at k, averaged over users with at least one relevant item.

    Coverage and novelty describe every list in `top`, evaluated or not.
    `n_users` is the number of training users behind `item_popularity`.
    With no evaluable user the averaged figures are 0 and "users" says so.
    """
    top = np.asarray(top)
    if top.shape[1] < k:
        raise ValueError(f"top has {top.shape[1]} columns, fewer than k={k}")
    top = top[:, :k]
    relevant = _relevance(relevant)

    hits = hits_matrix(top, relevant)
    n_relevant = relevant_counts(relevant)
    evaluated = n_relevant > 0
    hits, n_relevant = hits[evaluated], n_relevant[evaluated]

    return {
        "precision": _mean(precision_at_k(hits, k)),
        "recall": _mean(recall_at_k(hits, n_relevant)),
        "ndcg": _mean(ndcg_at_k(hits, n_relevant)),
        "map": _mean(average_precision_at_k(hits, n_relevant)),
        "hit_rate": _mean(hit_rate(hits)),
        "coverage": catalog_coverage(top, relevant.shape[1]),
        "novelty": novelty(top, item_popularity, n_users),
        "users": int(np.count_nonzero(evaluated)),
    }


def _mean(per_user):
    return float(per_user.mean()) if per_user.size else 0.0


def split_mask(n_rows, test_size, seed):
    """Rows for the test set: default_rng(seed).random(n_rows) < test_size.

    The same seed always gives the same split; each row is in the test set
    with probability test_size, independently of the others.
    """
    return np.random.default_rng(seed).random(n_rows) < test_size
