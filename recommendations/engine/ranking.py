"""Putting scores from several sources on one scale and blending them.

The server and the offline evaluation both rank with these functions, so
what `evaluate` measures is what users are shown.
"""

import numpy as np


def standardised(scores):
    """Scores on a common scale (zero mean, unit spread), row by row."""
    scores = np.asarray(scores, dtype=np.float64)
    mean = scores.mean(axis=-1, keepdims=True)
    spread = scores.std(axis=-1, keepdims=True)
    usable = np.isfinite(spread) & (spread > 0)
    safe = np.where(usable, spread, 1.0)
    return np.where(usable, (scores - mean) / safe, 0.0)


def blend(parts):
    """Sum of standardised score arrays, each with its weight."""
    total = None
    for scores, weight in parts:
        if weight == 0:
            continue
        term = weight * standardised(scores)
        total = term if total is None else total + term
    return total


def personal_scores(model_scores, neighbour_scores, neighbour_weight):
    """What a known user is ranked by: the model, and the neighbours of
    what they took up."""
    return blend([(model_scores, 1.0), (neighbour_scores, neighbour_weight)])
