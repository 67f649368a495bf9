"""The offline protocol: how well would the served lists have done?

Every interaction goes to the test set with probability `test_size`
under a seeded generator, the rest is the training set. A model is
trained on the training set alone; then, for every user with test items,
every item not in that user's training set is ranked, with the same
blending the server uses, and the top k is compared with the user's test
items. Popularity (training counts) is measured on the same split.
"""

from dataclasses import dataclass

import numpy as np
from django.conf import settings
from scipy import sparse

from recommendations.engine.feedback import taken_up
from recommendations.engine.metrics import (
    ranked_top_k,
    rating_errors,
    split_mask,
    summarise,
)
from recommendations.engine.ranking import personal_scores
from recommendations.engine.scoring import predict_pairs

BATCH_USERS = 256


@dataclass(frozen=True)
class Protocol:
    k: int = 10
    test_size: float = 0.2
    seed: int = 0


@dataclass
class Split:
    """Train and test interactions as users x items matrices."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    train: object
    test: object
    weights: object
    taken: object
    relevant: object
    popularity: np.ndarray

    @property
    def n_users(self):
        return len(self.user_ids)


def split_interactions(interactions, protocol):
    test_mask = split_mask(len(interactions), protocol.test_size, protocol.seed)
    return interactions.select(~test_mask), interactions.select(test_mask)


def build_split(train, test):
    user_ids = np.unique(np.concatenate([train.user_ids, test.user_ids]))
    item_ids = np.unique(np.concatenate([train.item_ids, test.item_ids]))
    weights = _matrix(train, train.weights(), user_ids, item_ids)
    taken = _matrix(train, taken_up(train.kinds, train.weights()), user_ids, item_ids)
    seen = _matrix(train, np.ones(len(train)), user_ids, item_ids)
    seen.data[:] = 1.0

    tested = _matrix(test, np.ones(len(test)), user_ids, item_ids)
    tested.data[:] = 1.0
    relevant = (tested - tested.multiply(seen)).tocsr()
    relevant.eliminate_zeros()

    return Split(
        user_ids=user_ids,
        item_ids=item_ids,
        train=seen.tocsr(),
        test=tested.tocsr(),
        weights=weights,
        taken=taken,
        relevant=relevant,
        popularity=np.asarray(seen.sum(axis=0)).ravel(),
    )


def _matrix(table, values, user_ids, item_ids):
    rows = np.searchsorted(user_ids, table.user_ids)
    columns = np.searchsorted(item_ids, table.item_ids)
    shape = (len(user_ids), len(item_ids))
    return sparse.csr_matrix((values, (rows, columns)), shape=shape)


def evaluate_settings(interactions, options, protocol):
    """Train these settings on the protocol's training split and measure."""
    from recommendations.training import fit_model

    train, test = split_interactions(interactions, protocol)
    data = build_split(train, test)
    fitted = fit_model(train, options, holdout=False)

    metrics = measure(data, ModelRanker(fitted.artifact, data, options), protocol)
    if options.algorithm == "svd" and options.feedback == "explicit":
        metrics.update(_rating_errors(fitted.artifact, test))
    return metrics


def evaluate_popularity(interactions, protocol):
    train, test = split_interactions(interactions, protocol)
    data = build_split(train, test)
    return measure(data, PopularityRanker(data), protocol)


def measure(data, ranker, protocol):
    """Rank every user with test items and summarise the metrics."""
    users = np.flatnonzero(np.diff(data.relevant.indptr) > 0)
    tops = []
    for start in range(0, len(users), BATCH_USERS):
        batch = users[start : start + BATCH_USERS]
        scores = ranker.scores(batch)
        tops.append(ranked_top_k(scores, data.train[batch], protocol.k))

    top = np.vstack(tops) if tops else np.zeros((0, protocol.k), dtype=int)
    return summarise(
        top, data.relevant[users], data.popularity, data.n_users, protocol.k
    )


class PopularityRanker:
    def __init__(self, data):
        self.popularity = data.popularity.astype(np.float64)

    def scores(self, users):
        return np.tile(self.popularity, (len(users), 1))


class ModelRanker:
    """Scores users the way the server scores a known user."""

    def __init__(self, artifact, data, options):
        self.data = data
        self.algorithm = options.algorithm
        self.weight = (
            0.0 if options.algorithm == "ease" else settings.RTREC["NEIGHBOUR_BLEND"]
        )
        self.columns = np.searchsorted(data.item_ids, artifact.item_ids)
        self.artifact = artifact
        self.neighbours = _neighbour_matrix(artifact, self.columns, len(data.item_ids))
        self.user_rows = _positions(artifact.user_ids, data.user_ids)

    def scores(self, users):
        model = self._model_scores(users)
        liked = self.data.weights[users].maximum(0)
        together = np.asarray((liked @ self.neighbours).todense())
        return personal_scores(model, together, self.weight)

    def _model_scores(self, users):
        n_items = len(self.data.item_ids)
        artifact = self.artifact
        if self.algorithm == "ease":
            rows = self.data.taken[users][:, self.columns].sign()
            in_model = np.asarray(rows @ artifact.item_factors)
        else:
            in_model = self._factor_scores(users)

        # Items the model never saw (no training interactions) rank last.
        scores = np.full((len(users), n_items), np.nan)
        scores[:, self.columns] = in_model
        floor = np.nanmin(scores, axis=1, keepdims=True)
        return np.where(np.isnan(scores), floor, scores)

    def _factor_scores(self, users):
        artifact = self.artifact
        rows = self.user_rows[users]
        known = rows >= 0
        user_factors = np.zeros((len(users), artifact.n_factors))
        user_bias = np.zeros(len(users))
        user_factors[known] = artifact.user_factors[rows[known]]
        user_bias[known] = artifact.user_bias[rows[known]]
        return (
            user_factors @ artifact.item_factors.T
            + artifact.item_bias
            + (artifact.global_mean + user_bias)[:, None]
        )


def _positions(known_ids, wanted_ids):
    lookup = {raw: i for i, raw in enumerate(known_ids.tolist())}
    return np.array([lookup.get(raw, -1) for raw in wanted_ids.tolist()], np.intp)


def _neighbour_matrix(artifact, columns, n_items):
    index = artifact.extras["neighbour_index"]
    similarity = artifact.extras["neighbour_similarity"]
    k = index.shape[1]
    rows = np.repeat(columns, k)
    targets = columns[index.ravel()]
    return sparse.csr_matrix(
        (similarity.ravel().astype(np.float64), (rows, targets)), (n_items, n_items)
    )


def _rating_errors(artifact, test):
    ratings = test.kinds == "rate"
    if not ratings.any():
        return {}
    user_index = _positions(artifact.user_ids, test.user_ids[ratings])
    item_index = _positions(artifact.item_ids, test.item_ids[ratings])
    predicted = predict_pairs(artifact, user_index, item_index)
    return rating_errors(predicted, test.values[ratings])
