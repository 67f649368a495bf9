"""Folding a user into a trained model, one event at a time.

The item factors stay fixed; the user's vector is the solution of a small
ridge regression over what they did. Its normal equations are kept and
grown by each event, so an event costs a rank-few update and one k x k
solve, whatever the length of the user's history.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class NormalEquations:
    """A @ x = b for one user's vector."""

    a: np.ndarray
    b: np.ndarray
    n_events: int = 0

    def solve(self):
        return np.linalg.solve(self.a, self.b)


class ImplicitFoldIn:
    """Fold-in for factors trained on implicit feedback (0/1 targets).

    Every item the user did not touch counts as a weak 0, the way
    implicit-feedback ALS treats unobserved pairs; that term is the same
    for every user (the Gram matrix of the item factors), so it is
    computed once per model. An event on an item adds confidence
    `alpha * |weight|` that the user's preference for it is 1 (a positive
    weight) or 0 (a negative one, such as a dislike).
    """

    def __init__(self, item_factors, item_bias, reg=1.0, alpha=1.0):
        factors = np.asarray(item_factors, dtype=np.float64)
        k = factors.shape[1]
        self.item_factors = factors
        self.item_bias = np.asarray(item_bias, dtype=np.float64)
        self.alpha = alpha
        self._base = factors.T @ factors + reg * np.eye(k)

    def start(self):
        return NormalEquations(self._base.copy(), np.zeros(len(self._base)))

    def add(self, equations, indices, weights):
        weights = np.asarray(weights, dtype=np.float64)
        rows = self.item_factors[indices]
        confidence = self.alpha * np.abs(weights)
        preference = (weights > 0).astype(np.float64)

        equations.a += (rows * confidence[:, None]).T @ rows
        equations.b += ((1 + confidence) * preference) @ rows
        equations.n_events += len(weights)

    def scores(self, equations):
        return self.item_factors @ equations.solve() + self.item_bias


class ExplicitFoldIn:
    """Fold-in for a rating predictor: a ridge fit of the user's bias and
    factors to the ratings their events stand for."""

    def __init__(self, item_factors, item_bias, global_mean, reg=1.0):
        factors = np.asarray(item_factors, dtype=np.float64)
        self.item_factors = factors
        self.item_bias = np.asarray(item_bias, dtype=np.float64)
        self.global_mean = float(global_mean)
        self.reg = reg
        # The user's bias is the last unknown, fed by a column of ones.
        self._design = np.hstack([factors, np.ones((len(factors), 1))])

    def start(self):
        k = self._design.shape[1]
        return NormalEquations(self.reg * np.eye(k), np.zeros(k))

    def add(self, equations, indices, targets):
        rows = self._design[indices]
        residual = np.asarray(targets, np.float64) - self.global_mean
        residual -= self.item_bias[indices]

        equations.a += rows.T @ rows
        equations.b += residual @ rows
        equations.n_events += len(residual)

    def scores(self, equations):
        solution = equations.solve()
        return self._design @ solution + self.item_bias + self.global_mean
