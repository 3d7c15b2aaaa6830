"""A cross-validation parent's summary: per fold, and each metric's mean and std over the folds.

The estimate is taken once every fold has ended, over the folds that completed (the ones that
failed, were cancelled or interrupted are listed, not averaged). ``std`` is the population
standard deviation over folds (``numpy.std``, as scikit-learn's ``cross_val_score(...).std()``),
so the network's figures and the baseline's read the same way.

For tabular data the same folds also train two scikit-learn baselines (a scaled logistic
regression and histogram gradient-boosted trees), in-process and in seconds, so a user sees
whether the network is worth it. They are computed once, when the folds have ended, and kept in
the parent's summary.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from core.runs.cv import best_epochs, final_epochs, final_runs, fold_runs, sync
from core.runs.records import TERMINAL, Run
from core.workspace import Workspace

log = logging.getLogger(__name__)
BASELINE_KEY = "cv_baseline"  # in the parent run's summary


def cv_summary(ws: Workspace, parent_id: str) -> dict[str, Any]:
    """Everything ``status PARENT`` shows: status, folds, mean/std per metric, baseline."""
    parent = sync(ws.store, parent_id)
    folds = fold_runs(ws.store, parent_id)
    ended = bool(folds) and all(f.status in TERMINAL for f in folds)
    completed = [f for f in folds if f.status == "completed"]
    summary: dict[str, Any] = {
        "run_id": parent.id, "name": parent.name, "status": parent.status,
        "dataset": parent.dataset, "model": parent.model, "k": parent.config["data"]["cv"],
        "ended": ended, "folds": [_fold(f) for f in folds],
        "not_completed": {s: [f.id for f in folds if f.status == s]
                          for s in ("failed", "cancelled", "interrupted")},
        "metrics": {}, "best_epoch": None, "final_epochs": None, "baseline": {},
        "final_runs": [{"run_id": r.id, "status": r.status, "epochs": r.config["train"]["epochs"]}
                       for r in final_runs(ws.store, parent_id)],
    }
    if ended and completed:
        summary["metrics"] = aggregate([f.summary.get("final", {}) for f in completed])
        epochs = best_epochs(completed)
        summary["best_epoch"] = _stats(epochs) if epochs else None
        summary["final_epochs"] = final_epochs(completed)
    if ended:
        summary["baseline"] = baseline(ws, parent)
    return summary


def aggregate(per_fold: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """``{metric: {mean, std, n, folds}}`` over the metrics every fold reports."""
    keys = sorted(set.intersection(*(set(m) for m in per_fold))) if per_fold else []
    return {key: _stats([m[key] for m in per_fold]) for key in keys}


def _stats(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": len(values),
            "folds": [float(v) for v in values]}


def _fold(run: Run) -> dict[str, Any]:
    return {"fold": run.config["data"]["fold"], "run_id": run.id, "status": run.status,
            "epochs_run": run.epoch, "final": run.summary.get("final", {}),
            "best_epoch": run.summary.get("best_epoch", {}).get("epoch"), "error": run.error}


# -- the scikit-learn baseline -------------------------------------------------------------------


def baseline(ws: Workspace, parent: Run) -> dict[str, Any]:
    """The baselines' fold scores for a tabular CV (``{}`` for images), computed once and kept
    in the parent's summary."""
    if BASELINE_KEY in parent.summary:
        return parent.summary[BASELINE_KEY]
    from core.data import get_info

    if get_info(ws, parent.dataset).modality != "tabular":
        return {}
    try:
        scores = baseline_scores(ws, parent.dataset, parent.config["data"]["cv"],
                                 seed=parent.config["train"]["seed"])
    except ValueError as exc:  # e.g. missing values a linear model cannot take: say so, once
        log.warning("No scikit-learn baseline for %s: %s", parent.id, exc)
        scores = {"error": f"no baseline: {exc}"}
    if scores and not ws.store.read_only:
        ws.store.update_run(parent.id, summary={BASELINE_KEY: scores})
    return scores


def baseline_scores(ws: Workspace, dataset_name: str, k: int, seed: int = 0) -> dict[str, Any]:
    """Logistic regression and gradient-boosted trees on each of the ``k`` folds of a table:
    ``{model: {"val/acc": stats, "val/loss": stats}}``, fitted on the fold's train rows only."""
    from core.data import load_dataset
    from core.data.folds import fold_splits

    dataset = load_dataset(ws, dataset_name)
    x_all = _rows(dataset)
    if x_all is None:
        return {}
    pool = np.concatenate([dataset.indices("train"), dataset.indices("val")])
    x_of = dict(zip(pool.tolist(), x_all, strict=True))
    y_of = dict(zip(pool.tolist(), np.concatenate(
        [dataset.labels("train"), dataset.labels("val")]).tolist(), strict=True))
    classes = np.arange(dataset.info.num_classes)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in _MODELS}
    for fold in range(k):
        splits = fold_splits(dataset, k, fold)
        xs = {s: np.stack([x_of[i] for i in splits[s]]) for s in ("train", "val")}
        ys = {s: np.asarray([y_of[i] for i in splits[s]]) for s in ("train", "val")}
        for name, make in _MODELS.items():
            model = make(seed).fit(xs["train"], ys["train"])
            results[name].append(_score(model, xs["val"], ys["val"], classes))
    return {name: aggregate(per_fold) for name, per_fold in results.items()}


def _rows(dataset) -> np.ndarray | None:
    """The train then val rows of an in-memory table, in ``indices`` order."""
    train, val = dataset.array("train"), dataset.array("val")
    if train is None or val is None:
        return None
    return np.concatenate([train, val]).astype(np.float64)


def _score(model, x: np.ndarray, y: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Accuracy and mean cross-entropy, as the trainer computes ``val/acc`` and ``val/loss``."""
    probs = np.zeros((len(x), len(classes)))
    probs[:, model.classes_] = model.predict_proba(x)  # a fold's train may lack a rare class
    picked = np.clip(probs[np.arange(len(y)), y], 1e-15, 1.0)
    return {"val/acc": float((probs.argmax(1) == y).mean()),
            "val/loss": float(-np.log(picked).mean())}


def _logistic(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))


def _boosted_trees(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed)


_MODELS = {"logistic_regression": _logistic, "gradient_boosting": _boosted_trees}
