"""Top N over a large catalog from an approximate index instead of every item.

A user's score for an item is the item's factors dotted with the user's,
plus the item's bias, plus terms the same for every item. With the bias
appended to each item's factors and a 1 appended to the user's, ranking
by score is a maximum inner product search, which an HNSW graph (faiss)
answers by visiting a few thousand items instead of all of them. The
graph only proposes candidates: they are scored exactly here, so what the
index gets wrong is a good item missed, never a list out of order.
"""

import numpy as np

from recommendations.engine.scoring import score_items, top_n

# Asking the graph for more than this share of the catalog costs about
# as much as scoring every item, which is exact: at a million items, 2,048
# took 6 ms here and scoring them all 10 to 50 ms.
EXACT_SHARE = 0.005
# Rows converted to float64 at a time while summing the moments.
CHUNK = 65_536


class ApproximateIndex:
    """An HNSW graph over items' factors and biases, for one model.

    `m` is the number of links per item, `ef_construction` how widely
    the build looks for them, and `ef_search` how many items a search
    keeps in view: the larger, the better the recall and the slower the
    build or the search. The graph holds a float32 copy of the factors
    and about 8 m bytes of links an item.
    """

    def __init__(
        self,
        item_factors,
        item_bias,
        m=16,
        ef_construction=64,
        ef_search=1024,
        threads=1,
    ):
        self.item_factors = item_factors
        self.item_bias = item_bias
        self.m, self.ef_construction = m, ef_construction
        self.ef_search = ef_search
        self.graph = _build(item_factors, item_bias, m, ef_construction, threads)
        self.mean, self.covariance = _moments(item_factors, item_bias)

    @property
    def n_items(self):
        return len(self.item_bias)

    def top_n(self, user_factors, n, excluded=None):
        """About the n best items for a user, best first, as indices.

        `excluded` is a boolean mask or an index array over the items,
        as for scoring.top_n.
        """
        candidates = self.candidates(user_factors, n, excluded)
        scores = self.scores_of(candidates, user_factors)
        return candidates[np.argsort(-scores, kind="stable")]

    def candidates(self, user_factors, count, excluded=None):
        """Up to `count` items among the best for a user, in no order.

        The graph is asked for more than `count`, as many more as the
        exclusions should need, and again for more if too few survive
        them; past a point, every item is scored instead. Fewer come back
        only when fewer items are left.
        """
        mask = _mask(excluded, self.n_items)
        n_excluded = int(np.count_nonzero(mask))
        count = min(count, self.n_items - n_excluded)
        if count <= 0:
            return np.empty(0, dtype=np.intp)

        # Few exclusions: enough to survive them all. Many (a genre, say):
        # twice what should survive them in proportion.
        kept = 1 - n_excluded / self.n_items
        asked = min(count + n_excluded, 2 * int(np.ceil(count / kept)))
        while asked <= max(EXACT_SHARE * self.n_items, self.ef_search):
            found = self._search(user_factors, asked)
            found = found[~mask[found]]
            if len(found) >= count:
                return found[:count]
            asked *= 4
        return self._exact(user_factors, count, mask)

    def scores_of(self, indices, user_factors):
        """The model's score of some items, less the terms every item shares."""
        return score_items(
            self.item_factors[indices], self.item_bias[indices], 0.0, user_factors, 0.0
        )

    def score_moments(self, user_factors):
        """Mean and standard deviation of scores_of over every item.

        From the items' mean and covariance, so without scoring them all.
        """
        query = _query(user_factors, np.float64)
        variance = float(query @ self.covariance @ query)
        return float(self.mean @ query), np.sqrt(max(variance, 0.0))

    def _search(self, user_factors, asked):
        import faiss

        params = faiss.SearchParametersHNSW()
        # faiss keeps at most efSearch items in view, however many are asked.
        params.efSearch = max(self.ef_search, asked)
        query = _query(user_factors, np.float32)[None, :]
        _, found = self.graph.search(query, asked, params=params)
        found = found[0]
        return found[found >= 0].astype(np.intp)

    def _exact(self, user_factors, count, mask):
        scores = score_items(self.item_factors, self.item_bias, 0.0, user_factors, 0.0)
        return top_n(scores, count, mask)


def personal_scores_at(index, candidates, user_factors, offset, together, weight):
    """ranking.personal_scores at the candidates, without the whole catalog.

    `offset` is the part of the model's score every item shares (global
    mean and user bias), `together` the neighbour scores of every item.
    Each part is standardised by its mean and spread over every item, as
    the exact path does, so the candidates come in the same order as
    there; a part with no spread counts for nothing, as there.
    """
    model = index.scores_of(candidates, user_factors) + offset
    mean, spread = index.score_moments(user_factors)
    scores = _standardised_by(model, mean + offset, spread)
    if weight:
        together = np.asarray(together, dtype=np.float64)
        mean, spread = _mean_and_spread(together)
        scores += weight * _standardised_by(together[candidates], mean, spread)
    return scores


def top_positive(values, count, excluded=None):
    """Up to `count` indices of the largest positive values, in no order.

    Cheap on a mostly zero array, such as the neighbour scores of a few
    items.
    """
    positive = np.flatnonzero(values > 0)
    if excluded is not None:
        positive = positive[~_mask(excluded, len(values))[positive]]
    if len(positive) <= count:
        return positive
    best = np.argpartition(-values[positive], count - 1)[:count]
    return positive[best]


def _build(item_factors, item_bias, m, ef_construction, threads):
    # Imported here, not above: a server that builds no index (the
    # default) is spared faiss's start-up time and 15 MiB a process.
    import faiss

    vectors = np.empty((len(item_bias), item_factors.shape[1] + 1), np.float32)
    vectors[:, :-1] = item_factors
    vectors[:, -1] = item_bias

    graph = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = ef_construction
    # One thread unless asked: a server process uses one BLAS thread (see
    # rtrec_site/asgi.py) because a process runs per CPU and OpenMP threads
    # of several processes spin against each other on the same CPUs. One
    # thread also makes the graph the same on every build: items added in
    # parallel link to whichever neighbours happen to be there first.
    faiss.omp_set_num_threads(threads)
    try:
        graph.add(vectors)
    finally:
        faiss.omp_set_num_threads(1)
    return graph


def _moments(item_factors, item_bias):
    """Mean and covariance of the items' factors with their bias appended."""
    n_items = len(item_bias)
    total = np.zeros(item_factors.shape[1] + 1)
    for start in range(0, n_items, CHUNK):
        total += _augmented(item_factors, item_bias, start).sum(axis=0)
    mean = total / max(n_items, 1)

    # Centred before multiplying, so that a large mean does not swamp a
    # small spread.
    covariance = np.zeros((len(mean), len(mean)))
    for start in range(0, n_items, CHUNK):
        rows = _augmented(item_factors, item_bias, start) - mean
        covariance += rows.T @ rows
    return mean, covariance / max(n_items, 1)


def _augmented(item_factors, item_bias, start):
    stop = start + CHUNK
    rows = np.empty((len(item_bias[start:stop]), item_factors.shape[1] + 1))
    rows[:, :-1] = item_factors[start:stop]
    rows[:, -1] = item_bias[start:stop]
    return rows


def _query(user_factors, dtype):
    query = np.ones(len(user_factors) + 1, dtype=dtype)
    query[:-1] = user_factors
    return query


def _mask(excluded, n_items):
    """The exclusions as a boolean mask, to be read and not written."""
    if isinstance(excluded, np.ndarray) and excluded.dtype == bool:
        return excluded
    mask = np.zeros(n_items, dtype=bool)
    if excluded is not None:
        mask[excluded] = True
    return mask


def _mean_and_spread(values):
    """np.mean and np.std, from the nonzero values alone."""
    nonzero = values[values != 0]
    mean = nonzero.sum() / len(values)
    squares = np.sum((nonzero - mean) ** 2) + (len(values) - len(nonzero)) * mean**2
    return mean, np.sqrt(squares / len(values))


def _standardised_by(values, mean, spread):
    if not np.isfinite(spread) or spread <= 0:
        return np.zeros(len(values))
    return (values - mean) / spread
