"""Likely label errors: samples whose given label a trained run doubts, ranked by cleanlab.

Confident learning needs probabilities the model made for samples it did not train on: a
cross-validation run's folds (each fold's validation split; together they cover train+val),
else one run's validation split. They come from the stored predictions
(``core.analyze.evaluate``, computed once if missing). ``cleanlab.filter.find_label_issues``
picks the samples it believes mislabelled, ranked by self-confidence (the probability the model
gives the given label), lowest first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data.health.report import (
    FORMAT_VERSION,
    current_fingerprint,
    health_dir,
    read_json,
    write_json,
)
from core.data.info import SPLITS
from core.errors import InvalidConfig, InvalidRunState
from core.progress import ProgressFn, no_progress

if TYPE_CHECKING:
    from core.data.dataset import Dataset
    from core.runs.records import Run
    from core.workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass
class OutOfSample:
    """Out-of-sample class probabilities: ``probs[k]`` for dataset sample ``index[k]``."""

    index: np.ndarray  # global sample indices (int64)
    labels: np.ndarray  # given labels (int64)
    probs: np.ndarray  # (N, C) float
    source: str  # what they come from, in words
    signatures: dict[str, str | None]  # run id -> checkpoint signature the predictions used


def rank_label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Positions of the likely mislabelled samples, most doubtful first (cleanlab's confident
    learning, ranked by self-confidence)."""
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        raise InvalidConfig("Finding label errors needs samples of at least 2 classes.")
    return np.asarray(find_label_issues(labels, probs, return_indices_ranked_by="self_confidence",
                                        n_jobs=1), dtype=np.int64)


def label_report(ws: Workspace, name: str, run_id: str, progress: ProgressFn = no_progress,
                 refresh: bool = False) -> dict[str, Any]:
    """The likely label errors of dataset ``name`` according to run ``run_id``: stored beside
    the health report, redone when the dataset or the run's checkpoint changed."""
    from core.data.registry import load_dataset

    run = ws.store.get_run(run_id)
    _check_run(run, name)
    path = health_dir(ws, name) / f"labels-{run.id}.json"
    fingerprint = current_fingerprint(ws, name)
    runs = _source_runs(ws, run)
    stored = None if refresh else read_json(path)
    if stored and _fresh(ws, stored, fingerprint, runs):
        return stored
    started = time.time()
    dataset = load_dataset(ws, name)
    oos = out_of_sample(ws, runs, progress)
    ranked = rank_label_issues(oos.labels, oos.probs)
    report = {"version": FORMAT_VERSION, "dataset": name, "run_id": run.id,
              "fingerprint": fingerprint, "signatures": oos.signatures, "source": oos.source,
              "checked": len(oos.index), "created_at": time.time(),
              "items": _items(dataset, oos, ranked)}
    report["seconds"] = round(time.time() - started, 3)
    write_json(path, report)
    return report


def stored_label_report(ws: Workspace, name: str, run_id: str) -> dict[str, Any] | None:
    """The stored label errors of ``name`` by ``run_id`` if still valid, else None (cheap:
    nothing is predicted; the page uses it)."""
    run = ws.store.get_run(run_id)
    stored = read_json(health_dir(ws, name) / f"labels-{run.id}.json")
    try:
        runs = _source_runs(ws, run)
    except InvalidRunState:
        return None
    if stored and _fresh(ws, stored, current_fingerprint(ws, name), runs):
        return stored
    return None


def _check_run(run: Run, name: str) -> None:
    if run.dataset != name:
        raise InvalidConfig(f"Run {run.id} was trained on {run.dataset!r}, not {name!r}: pick a "
                            f"run of {name!r}.")
    if run.kind == "ensemble":
        raise InvalidConfig(f"Run {run.id} is an ensemble fitted on the validation split, so its "
                            "validation probabilities are not out-of-sample: pick a trained run "
                            "or a cross-validation run.")


def _source_runs(ws: Workspace, run: Run) -> list[Run]:
    """The runs whose validation predictions are used: a CV parent's completed folds, else
    the run itself."""
    if run.kind != "cv":
        return [run]
    from core.runs.cv import fold_runs

    folds = [f for f in fold_runs(ws.store, run.id) if f.status == "completed"]
    if not folds:
        raise InvalidRunState(f"Run {run.id} has no completed fold yet: wait for its folds, or "
                              "resume it.")
    return folds


def _fresh(ws: Workspace, stored: dict[str, Any], fingerprint: dict[str, Any],
           runs: list[Run]) -> bool:
    from core.checkpoint import checkpoint_signature

    if stored.get("version") != FORMAT_VERSION or stored.get("fingerprint") != fingerprint:
        return False
    return stored.get("signatures") == {r.id: checkpoint_signature(ws, r.id) for r in runs}


def out_of_sample(ws: Workspace, runs: list[Run], progress: ProgressFn = no_progress
                  ) -> OutOfSample:
    """The runs' stored validation predictions (computed if missing), as global samples."""
    from core.analyze.evaluate import evaluate
    from core.checkpoint import checkpoint_signature
    from core.config import RunConfig
    from core.data.folds import load_for_config

    index, labels, probs, signatures = [], [], [], {}
    for done, run in enumerate(runs):
        def step(d: int, t: int, message: str = "", done: int = done, rid: str = run.id) -> None:
            progress(done * t + d, len(runs) * t, f"predicting the validation split of {rid}")

        signatures[run.id] = checkpoint_signature(ws, run.id)
        preds = evaluate(ws, run.id, "val", progress=step)
        view = load_for_config(ws, RunConfig.from_dict(run.config).data)
        index.append(view.indices("val")[preds.index])
        labels.append(preds.y_true)
        probs.append(preds.probs)
    source = (f"{len(runs)} cross-validation folds (their validation splits)" if len(runs) > 1
              or runs[0].kind == "cv_fold" else f"the validation split of run {runs[0].id}")
    return OutOfSample(np.concatenate(index), np.concatenate(labels), np.concatenate(probs),
                       source, signatures)


def _items(dataset: Dataset, oos: OutOfSample, ranked: np.ndarray) -> list[dict[str, Any]]:
    where = {}
    for split in SPLITS:
        ids = dataset.ids(split)
        for pos, g in enumerate(dataset.indices(split).tolist()):
            where[g] = (split, pos, ids[pos])
    classes = dataset.info.classes
    items = []
    for k in ranked.tolist():
        split, pos, sample_id = where[int(oos.index[k])]
        given, suggested = int(oos.labels[k]), int(np.argmax(oos.probs[k]))
        items.append({"split": split, "index": pos, "id": sample_id, "given": classes[given],
                      "suggested": classes[suggested],
                      "confidence": round(float(oos.probs[k][suggested]), 4),
                      "given_probability": round(float(oos.probs[k][given]), 4)})
    return items
