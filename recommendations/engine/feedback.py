"""Turning events into numbers a model can learn from."""

import numpy as np

RATE = "rate"


def event_weights(kinds, values, weights_by_kind, rate_neutral, rate_per_star):
    """How much each event says the user likes the item; negative is dislike.

    Kinds other than `rate` take their weight from `weights_by_kind`; a
    rating counts `rate_per_star` for each star above `rate_neutral`, so
    a low rating counts against the item.
    """
    kinds = np.asarray(kinds)
    weights = np.array([weights_by_kind.get(k, 0.0) for k in kinds.tolist()])
    is_rate = kinds == RATE
    if is_rate.any():
        stars = np.asarray(values, dtype=np.float64)[is_rate]
        weights[is_rate] = (stars - rate_neutral) * rate_per_star
    return weights


def taken_up(kinds, weights):
    """Event weights with every rating counted as a positive one.

    A rated item was chosen, whatever the stars; what a list of ten has
    to guess is that choice. The stars still weigh: one star counts 1, a
    good rating more.
    """
    weights = np.array(weights, dtype=np.float64)
    rated = np.asarray(kinds) == RATE
    weights[rated] = np.maximum(weights[rated], 0) + 1.0
    return weights


def rating_targets(kinds, values, weights, rating_scale):
    """The rating each event stands for, for a rating predictor.

    A rating is itself; any other event sits its weight away from the
    middle of the scale.
    """
    low, high = rating_scale
    kinds = np.asarray(kinds)
    targets = np.clip((low + high) / 2 + np.asarray(weights), low, high)
    is_rate = kinds == RATE
    targets[is_rate] = np.asarray(values, dtype=np.float64)[is_rate]
    return targets


def sample_negatives(user_index, item_index, n_items, popularity, ratio, seed):
    """Items each user did not touch, drawn in proportion to popularity.

    Popular items a user skipped say more about them than obscure ones,
    and drawing them keeps the model from ranking by popularity alone.
    Returns (user_index, item_index) of the sampled pairs.
    """
    rng = np.random.default_rng(seed)
    probability = popularity / popularity.sum()
    order = np.argsort(user_index, kind="stable")
    users, starts = np.unique(user_index[order], return_index=True)
    groups = np.split(item_index[order], starts[1:])

    sampled_users, sampled_items = [], []
    for user, touched in zip(users.tolist(), groups, strict=True):
        wanted = int(len(touched) * ratio)
        drawn = rng.choice(n_items, size=wanted * 3 + 10, p=probability)
        fresh = np.setdiff1d(np.unique(drawn), touched)
        rng.shuffle(fresh)
        picked = fresh[:wanted]
        sampled_users.append(np.full(len(picked), user))
        sampled_items.append(picked)
    return np.concatenate(sampled_users), np.concatenate(sampled_items)
