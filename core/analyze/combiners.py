"""How an ensemble combines its members' class probabilities: fitting and applying a combiner.

Pure numpy (scipy and scikit-learn are imported by the fitting functions that use them). A
fitted combiner is a plain JSON-able dict (``method``, ``weights``, and for stacking the logistic
regression's ``coef``/``intercept``), stored as ``runs/<id>/ensemble.json``: never a pickle.

Methods, each applied to ``probs``, a list of M arrays of shape (N, C):

- ``soft``: the mean of the members' probabilities.
- ``hard``: the majority vote of the members' argmaxes, ties broken by the soft mean.
- ``weighted``: a convex combination ``sum_k w_k P_k`` (``w >= 0``, ``sum w = 1``), with ``w``
  fitted on the validation split (``fit_weights``).
- ``stacking``: a multinomial logistic regression on the members' concatenated probabilities,
  its regularisation chosen by cross-validation on the validation split (``fit_stacking``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.analyze import ENSEMBLE_METHODS
from core.errors import InvalidConfig

EPS = 1e-12  # floor of a probability inside a log: a member sure and wrong is not -inf
STACKING_FOLDS = 5


def check_method(method: str) -> str:
    if method not in ENSEMBLE_METHODS:
        raise InvalidConfig(f"Unknown ensemble method {method!r}: choose one of "
                            f"{', '.join(ENSEMBLE_METHODS)}.")
    return method


def fit(method: str, probs: Sequence[np.ndarray], y: np.ndarray) -> dict[str, Any]:
    """The fitted combiner of ``method`` for the members' validation ``probs`` and labels ``y``
    (soft and hard voting fit nothing, but record the uniform weights they use)."""
    check_method(method)
    m = len(probs)
    combiner: dict[str, Any] = {"method": method, "weights": [1.0 / m] * m}
    if method == "weighted":
        combiner["weights"] = fit_weights(probs, y).tolist()
    elif method == "stacking":
        combiner["stacking"] = fit_stacking(probs, y)
    return combiner


def combine(combiner: dict[str, Any], probs: Sequence[np.ndarray]) -> np.ndarray:
    """The ensemble's (N, C) probabilities (rows sum to 1) from the members' ``probs``."""
    method = check_method(combiner["method"])
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probs])  # (M, N, C)
    if method == "stacking":
        return stacking_proba(combiner["stacking"], stacked)
    if method == "hard":
        return hard_vote(stacked)
    weights = np.asarray(combiner["weights"], dtype=np.float64)
    out = np.tensordot(weights, stacked, axes=1)
    return out / out.sum(axis=1, keepdims=True)


def hard_vote(stacked: np.ndarray) -> np.ndarray:
    """Majority vote as probabilities: the vote shares, smoothed by the soft mean.

    With M members and ``lam = 1 / (2M + 1)``, ``(1 - lam) * votes / M + lam * soft`` has its
    argmax at the most-voted class (one vote is worth ``(1 - lam) / M > lam``, more than the
    soft mean can add), ties go to the class with the higher soft mean, and no probability of
    a class some member considers possible is 0 (so the log-loss stays finite).
    """
    m, n, c = stacked.shape
    votes = np.zeros((n, c))
    for member in stacked:
        votes[np.arange(n), member.argmax(axis=1)] += 1.0
    lam = 1.0 / (2 * m + 1)
    return (1 - lam) * votes / m + lam * stacked.mean(axis=0)


def fit_weights(probs: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Convex weights minimising the validation log-loss of ``sum_k w_k P_k``.

    The loss ``-mean_i log(sum_k w_k P_k[i, y_i])`` is convex in ``w`` (minus the log of a
    linear function), so SLSQP over the probability simplex (bounds ``0 <= w_k <= 1``, the
    equality ``sum w = 1``), started from the uniform weights and given the exact gradient,
    finds its global minimum. Tiny negative round-off is clipped and the weights renormalised.
    """
    from scipy.optimize import minimize

    y = np.asarray(y, dtype=np.int64)
    true = np.stack([np.asarray(p, dtype=np.float64)[np.arange(len(y)), y] for p in probs],
                    axis=1)  # (N, M): each member's probability of the true class
    m = true.shape[1]

    def loss(w: np.ndarray) -> float:
        return float(-np.log(np.maximum(true @ w, EPS)).mean())

    def grad(w: np.ndarray) -> np.ndarray:
        return -(true / np.maximum(true @ w, EPS)[:, None]).mean(axis=0)

    start = np.full(m, 1.0 / m)
    result = minimize(loss, start, jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * m,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                    "jac": lambda w: np.ones_like(w)}],
                      options={"ftol": 1e-10, "maxiter": 500})
    w = np.clip(result.x, 0.0, None)
    if not np.isfinite(w).all() or w.sum() <= 0 or loss(w / w.sum()) > loss(start):
        w = start  # never worse on val than plain soft voting
    return w / w.sum()


def fit_stacking(probs: Sequence[np.ndarray], y: np.ndarray) -> dict[str, Any]:
    """A multinomial logistic regression on the concatenated member probabilities (N, M*C),
    its inverse regularisation ``C`` chosen among 10 values by stratified K-fold
    cross-validation of the log-loss, all within the validation split; then refitted on all of
    it. Returned as plain arrays: ``coef`` (K, M*C), ``intercept`` (K), ``classes`` (the label
    indices of the K outputs; K = 1 for two classes)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    n_classes = probs[0].shape[1]
    counts = np.bincount(y, minlength=n_classes)
    folds = min(STACKING_FOLDS, int(counts.min()))
    if folds < 2:
        missing = [i for i, k in enumerate(counts) if k < 2]
        raise InvalidConfig(
            f"Stacking needs at least 2 validation samples of every class (classes {missing} "
            "have fewer): use --method weighted or soft, or a larger validation split.")
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in probs], axis=1)
    model = LogisticRegressionCV(Cs=10, cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                                 scoring="neg_log_loss", max_iter=2000)
    with warnings.catch_warnings():
        # scikit-learn 1.8+ announces changes of defaults (l1_ratios, its fitted attributes)
        # that do not change this L2 fit or the attributes read below.
        warnings.simplefilter("ignore", FutureWarning)
        model.fit(x, y)
    return {"coef": model.coef_.tolist(), "intercept": model.intercept_.tolist(),
            "classes": [int(c) for c in model.classes_], "n_classes": int(n_classes),
            "C": float(np.ravel(model.C_)[0]), "folds": folds}


def stacking_proba(params: dict[str, Any], stacked: np.ndarray) -> np.ndarray:
    """The stacked logistic regression's probabilities (what ``predict_proba`` computes)."""
    from core.analyze.metrics import softmax

    x = np.concatenate(list(stacked), axis=1)  # (N, M*C), the members in order
    z = x @ np.asarray(params["coef"]).T + np.asarray(params["intercept"])
    out = np.zeros((x.shape[0], int(params["n_classes"])))
    classes = params["classes"]
    if len(classes) == 2:  # binary: one logit for the second class
        p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
        out[:, classes[0]], out[:, classes[1]] = 1.0 - p1, p1
    else:
        out[:, classes] = softmax(z)
    return out


def disagreement(predictions: Sequence[np.ndarray]) -> np.ndarray:
    """(M, M): the share of samples on which members i and j predict different classes."""
    labels = np.stack([np.asarray(p) for p in predictions])
    return (labels[:, None, :] != labels[None, :, :]).mean(axis=2)
