"""EASE: a closed-form item-to-item model (Steck, WWW 2019).

B minimises ||X - X B||^2 + reg ||B||^2 with a zero diagonal, and has the
closed form B = -P / diag(P) with P = (X'X + reg I)^-1. A user's scores
are their interaction row times B, so folding a user in is exact and
costs one vector-matrix product: nothing to solve per event.
"""

import numpy as np

from recommendations.engine.foldin import NormalEquations


def fit_ease(interactions, reg):
    """The item-to-item weight matrix for a users x items 0/1 matrix."""
    gram = np.asarray((interactions.T @ interactions).todense(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += reg
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


class EaseFoldIn:
    """The EASE counterpart of a fold-in: the user's row, kept as weights."""

    def __init__(self, weights):
        self.weights = weights

    def start(self):
        return NormalEquations(a=None, b=np.zeros(len(self.weights)))

    def add(self, equations, indices, weights):
        np.add.at(equations.b, indices, np.asarray(weights, dtype=np.float64))
        equations.n_events += len(indices)

    def scores(self, equations):
        # EASE was fitted on 0/1 rows: an item taken up counts 1 however
        # often, one the user turned against counts -1.
        touched = np.flatnonzero(equations.b)
        return np.sign(equations.b[touched]) @ self.weights[touched]
