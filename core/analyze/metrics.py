"""Classification metrics from stored predictions: numpy and scikit-learn only, never torch.

Everything here takes ``y_true`` (int class indices) and ``probs`` (N x C class probabilities,
rows summing to 1), the arrays of ``runs/<id>/eval/<split>.npz``, so the dashboard derives every
number and curve from the stored file without loading a model. Edge cases are answers, not
crashes: a class absent from the split gets ``None`` for its AUC/AP with the reason, a split of
one sample gives what can be computed from one sample.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

TOP_K = (3, 5)  # top-k accuracies reported (only for k < number of classes)
ECE_BINS = 15
CURVE_GRID = 101  # points of the macro-average ROC curve (interpolated)
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


# -- probabilities ------------------------------------------------------------------------------


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predicted(probs: np.ndarray) -> np.ndarray:
    return np.asarray(probs).argmax(axis=1).astype(np.int64)


def _check(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probs must be (N, C) with N = len(y_true); got {p.shape} and {len(y)}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1]}); got {y.min()}..{y.max()}")
    return y, p


# -- summary numbers ------------------------------------------------------------------------------


def overall(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, top-k accuracy, log loss, macro/weighted P/R/F1."""
    from sklearn.metrics import balanced_accuracy_score, log_loss, precision_recall_fscore_support

    y, p = _check(y_true, probs)
    n, c = p.shape
    if n == 0:
        return {"samples": 0}
    pred = predicted(p)
    out: dict[str, float | None] = {"samples": n, "accuracy": float(np.mean(pred == y))}
    with warnings.catch_warnings():  # y_pred holding classes absent from y_true is expected here
        warnings.simplefilter("ignore")
        out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
        for k in TOP_K:
            if k < c:
                out[f"top{k}_accuracy"] = top_k_accuracy(y, p, k)
        out["log_loss"] = float(log_loss(y, p, labels=np.arange(c)))
        for average in ("macro", "weighted"):
            prec, rec, f1, _ = precision_recall_fscore_support(y, pred, average=average,
                                                               zero_division=0)
            out[f"precision_{average}"] = float(prec)
            out[f"recall_{average}"] = float(rec)
            out[f"f1_{average}"] = float(f1)
    return out


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` most probable (ties by index, as
    scikit-learn breaks them)."""
    y, p = _check(y_true, probs)
    top = np.argsort(p, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float(np.mean((top == y[:, None]).any(axis=1))) if len(y) else float("nan")


def per_class(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """One row per class: precision, recall, F1, support, ROC AUC and average precision (``None``
    with ``note`` where undefined)."""
    from sklearn.metrics import precision_recall_fscore_support

    y, p = _check(y_true, probs)
    c = p.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prec, rec, f1, support = precision_recall_fscore_support(
            y, predicted(p), labels=np.arange(c), zero_division=0)
    aucs, aps = class_aucs(y, p, classes), class_average_precisions(y, p, classes)
    rows = []
    for k, name in enumerate(classes):
        auc, note = aucs[k]
        rows.append({"class": str(name), "precision": float(prec[k]), "recall": float(rec[k]),
                     "f1": float(f1[k]), "support": int(support[k]), "auc": auc,
                     "average_precision": aps[k][0], "note": note})
    return rows


# -- ROC and precision-recall ------------------------------------------------------------------


def _one_vs_rest(y: np.ndarray, k: int, classes: Sequence[str] | None = None) -> str | None:
    """Why class ``k`` has no one-vs-rest ROC/PR here, or None when it has one."""
    name = f"class {classes[k]!s}" if classes is not None else f"class {k}"
    positives = int(np.sum(y == k))
    if positives == 0:
        return f"n/a: no sample of {name} in this split"
    if positives == len(y):
        return f"n/a: every sample is {name} (no negatives)"
    return None


def class_aucs(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str] | None = None
               ) -> list[tuple[float | None, str | None]]:
    """One-vs-rest ROC AUC of each class, or ``(None, reason)``."""
    from sklearn.metrics import roc_auc_score

    y, p = _check(y_true, probs)
    out = []
    for k in range(p.shape[1]):
        reason = _one_vs_rest(y, k, classes)
        out.append((None, reason) if reason else (float(roc_auc_score(y == k, p[:, k])), None))
    return out


def class_average_precisions(y_true: np.ndarray, probs: np.ndarray,
                             classes: Sequence[str] | None = None
                             ) -> list[tuple[float | None, str | None]]:
    from sklearn.metrics import average_precision_score

    y, p = _check(y_true, probs)
    out = []
    for k in range(p.shape[1]):
        reason = _one_vs_rest(y, k, classes)
        out.append((None, reason) if reason else
                   (float(average_precision_score(y == k, p[:, k])), None))
    return out


def auc_summary(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """ROC AUC: macro and weighted (support) averages over the classes where it is defined.

    Binary: the AUC of the positive class (index 1), which is what scikit-learn reports; both
    averages equal it. Classes without an AUC are listed in ``excluded`` with the reason.
    """
    y, p = _check(y_true, probs)
    per = class_aucs(y, p, classes)
    excluded = {str(classes[k]): reason for k, (auc, reason) in enumerate(per) if auc is None}
    result: dict[str, Any] = {"per_class": {str(classes[k]): auc for k, (auc, _) in
                                            enumerate(per)}, "excluded": excluded}
    if p.shape[1] == 2:
        value = per[1][0]
        result.update(macro=value, weighted=value,
                      note=None if value is not None else excluded[str(classes[1])])
        return result
    defined = [(auc, int(np.sum(y == k))) for k, (auc, _) in enumerate(per) if auc is not None]
    if not defined:
        result.update(macro=None, weighted=None,
                      note="n/a: fewer than two classes in this split")
        return result
    aucs, weights = np.array([a for a, _ in defined]), np.array([w for _, w in defined], float)
    result.update(macro=float(aucs.mean()), weighted=float(np.average(aucs, weights=weights)),
                  note=(f"averaged over {len(defined)} of {p.shape[1]} classes" if excluded
                        else None))
    return result


def roc_curves(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]
               ) -> dict[str, dict[str, Any]]:
    """``{class: {"fpr", "tpr", "auc"}}`` one-vs-rest, plus ``"macro"`` (the mean TPR on a common
    FPR grid). Classes without a curve are left out."""
    from sklearn.metrics import auc as area
    from sklearn.metrics import roc_curve

    y, p = _check(y_true, probs)
    curves: dict[str, dict[str, Any]] = {}
    for k, (auc, _) in enumerate(class_aucs(y, p)):
        if auc is None:
            continue
        fpr, tpr, _ = roc_curve(y == k, p[:, k])
        curves[str(classes[k])] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": auc}
    if curves:
        grid = np.linspace(0.0, 1.0, CURVE_GRID)
        tprs = [np.interp(grid, c["fpr"], c["tpr"]) for c in curves.values()]
        mean = np.mean(tprs, axis=0)
        mean[0] = 0.0
        curves["macro"] = {"fpr": grid.tolist(), "tpr": mean.tolist(),
                           "auc": float(area(grid, mean))}
    return curves


def pr_curves(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]
              ) -> dict[str, dict[str, Any]]:
    """``{class: {"precision", "recall", "ap"}}`` one-vs-rest; classes without one left out."""
    from sklearn.metrics import precision_recall_curve

    y, p = _check(y_true, probs)
    curves: dict[str, dict[str, Any]] = {}
    for k, (ap, _) in enumerate(class_average_precisions(y, p)):
        if ap is None:
            continue
        prec, rec, _ = precision_recall_curve(y == k, p[:, k])
        curves[str(classes[k])] = {"precision": prec.tolist(), "recall": rec.tolist(), "ap": ap}
    return curves


# -- confusion ------------------------------------------------------------------------------------


def confusion(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``[true, predicted]`` (C x C int) and the row-normalised matrix (rows of a class
    absent from the split are zeros)."""
    y, p = _check(y_true, probs)
    c = p.shape[1]
    counts = np.zeros((c, c), dtype=np.int64)
    np.add.at(counts, (y, predicted(p)), 1)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros((c, c)), where=totals > 0)
    return counts, normalised


def cell_indices(y_true: np.ndarray, probs: np.ndarray, true_class: int, pred_class: int
                 ) -> np.ndarray:
    """Positions of the samples in one confusion cell, most confident prediction first."""
    y, p = _check(y_true, probs)
    idx = np.flatnonzero((y == true_class) & (predicted(p) == pred_class))
    return idx[np.argsort(-p[idx, pred_class], kind="stable")]


def top_losses(y_true: np.ndarray, probs: np.ndarray, k: int = 16) -> np.ndarray:
    """The ``k`` most confident mistakes: misclassified samples by loss (-log p[true]), highest
    first."""
    y, p = _check(y_true, probs)
    wrong = np.flatnonzero(predicted(p) != y)
    loss = -np.log(np.clip(p[wrong, y[wrong]], 1e-15, 1.0))
    return wrong[np.argsort(-loss, kind="stable")][:k]


# -- calibration ----------------------------------------------------------------------------------


def reliability(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Top-label reliability: per equal-width confidence bin, mean confidence, accuracy and count;
    ``ece`` is the count-weighted mean gap |accuracy - confidence|."""
    y, p = _check(y_true, probs)
    conf = p.max(axis=1)
    correct = (predicted(p) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin b holds confidences in (edges[b], edges[b+1]]; a confidence of exactly 0 joins bin 0.
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    safe = np.maximum(count, 1)
    mean_conf = np.bincount(which, weights=conf, minlength=bins) / safe
    accuracy = np.bincount(which, weights=correct, minlength=bins) / safe
    ece = float(np.sum(count * np.abs(accuracy - mean_conf)) / len(y)) if len(y) else None
    return {"edges": edges.tolist(), "confidence": mean_conf.tolist(),
            "accuracy": accuracy.tolist(), "count": count.tolist(), "ece": ece}


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS
                               ) -> float | None:
    return reliability(y_true, probs, bins)["ece"]


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    y = np.asarray(y_true, dtype=np.int64)
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` (a bounded 1-D search
    over log T; the NLL is convex in 1/T, so the minimum is global)."""
    from scipy.optimize import minimize_scalar

    if len(y_true) == 0:
        return 1.0
    found = minimize_scalar(lambda log_t: nll(logits, y_true, float(np.exp(log_t))),
                            bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
                            method="bounded", options={"xatol": 1e-5})
    return float(np.exp(found.x))


def temperature_scaling(val_logits: np.ndarray, val_y: np.ndarray, logits: np.ndarray,
                        y_true: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Fit T on the validation logits; reliability, ECE and NLL of ``logits`` before and after."""
    t = fit_temperature(val_logits, val_y)
    return {"temperature": t,
            "before": {**reliability(y_true, softmax(logits), bins),
                       "nll": nll(logits, y_true) if len(y_true) else None},
            "after": {**reliability(y_true, softmax(logits, t), bins),
                      "nll": nll(logits, y_true, t) if len(y_true) else None},
            "fitted_on": int(len(val_y))}


# -- everything at once --------------------------------------------------------------------------


def report(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """The numbers of a split in one JSON-serialisable dict (what ``evaluate --json`` prints)."""
    y, p = _check(y_true, probs)
    if len(classes) != p.shape[1]:
        raise ValueError(f"{len(classes)} class names for {p.shape[1]} probability columns")
    if len(y) == 0:
        return {"overall": {"samples": 0}, "per_class": [], "auc": None, "ece": None}
    counts, _ = confusion(y, p)
    auc = auc_summary(y, p, classes)
    aps = [ap for ap, _ in class_average_precisions(y, p) if ap is not None]
    numbers = overall(y, p)
    numbers.update(auc_macro=auc["macro"], auc_weighted=auc["weighted"],
                   average_precision_macro=float(np.mean(aps)) if aps else None,
                   ece=expected_calibration_error(y, p))
    return {"overall": numbers, "per_class": per_class(y, p, classes),
            "auc": {k: v for k, v in auc.items() if k != "per_class"},
            "ece": numbers["ece"], "confusion": counts.tolist(), "classes": list(map(str, classes))}


# Which way is better, for highlighting the best run of each metric.
HIGHER_IS_BETTER = {"log_loss": False, "ece": False, "nll": False}


def better(metric: str) -> str:
    """``"max"`` or ``"min"``: the direction in which ``metric`` improves."""
    return "max" if HIGHER_IS_BETTER.get(metric, True) else "min"
