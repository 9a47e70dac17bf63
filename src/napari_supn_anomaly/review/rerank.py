"""Re-ranking cells from a person's decisions with a small classifier.

After a few accepted and a few rejected candidates, a logistic regression on per-cell numbers
(the scores, area, colour statistics: ``features.review_measurements``) gives every cell a second
score, the chance that a person would accept it. It only reorders the review queue and adds a
column: no cell is ever dropped or hidden.

The regression is fitted here with Newton's method in numpy (classes weighted to count equally,
an L2 penalty 1/C on the weights): the same model as scikit-learn's
``LogisticRegression(C=C, class_weight="balanced")``, fitted in milliseconds, so it can run on
every key press. Features are standardised over *all* cells, not the decided ones: the decided
cells are the top of the queue, whose scores barely differ, and scaling by their tiny spread
would throw the rest of the cells far out of range.
"""
from __future__ import annotations

import numpy as np

from .statuses import ACCEPTED, REJECTED

MIN_EACH = 3   # accepted and rejected cells needed before the re-ranker is fitted
C = 1.0        # inverse regularisation strength; fixed before any measurement (docs/benchmarks/review.md)
ITERATIONS = 30


def ready(status) -> bool:
    status = np.asarray(status, object)
    return int(np.sum(status == ACCEPTED)) >= MIN_EACH and int(np.sum(status == REJECTED)) >= MIN_EACH


def fit_logistic(z: np.ndarray, y: np.ndarray, c: float = C) -> np.ndarray:
    """Coefficients (intercept first) of a class-balanced, L2-penalised logistic regression of
    ``y`` (0/1) on the standardised features ``z``."""
    z = np.column_stack([np.ones(len(z)), z])
    n, n_pos = len(y), int(y.sum())
    weight = np.where(y == 1, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))
    penalty = np.full(z.shape[1], 1.0 / c)
    penalty[0] = 0.0   # the intercept is not penalised
    beta = np.zeros(z.shape[1])
    for _ in range(ITERATIONS):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        gradient = z.T @ (weight * (y - p)) - penalty * beta
        hessian = (z * (weight * p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(beta)), gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


def standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    sd[sd == 0] = 1.0
    return (x - x.mean(axis=0)) / sd


def rerank_scores(features: np.ndarray, status, c: float = C) -> np.ndarray | None:
    """P(accepted) for every row of ``features`` from the rows decided accepted or rejected
    (``unsure`` and undecided rows are not learnt from); None until :func:`ready`."""
    status = np.asarray(status, object)
    if not ready(status):
        return None
    z = standardise(np.asarray(features, np.float64))
    learn = (status == ACCEPTED) | (status == REJECTED)
    beta = fit_logistic(z[learn], (status[learn] == ACCEPTED).astype(float), c)
    return 1.0 / (1.0 + np.exp(-np.clip(beta[0] + z @ beta[1:], -30, 30)))
