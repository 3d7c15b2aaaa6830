"""Ensembles of runs: create one, fit its combiner on the validation split, evaluate it.

An ensemble is a run of kind ``ensemble`` (``parent_run`` = its first member) whose config has
an ``ensemble`` section naming its members and method, besides the usual ``data``/``model``/
``train`` sections (``model.name`` is ``"ensemble"``). Members may be any kind of run of the
same dataset and classes; image members may use different input sizes.

Fitting reads only the members' stored predictions of the **val** split (``evaluate(ws,
member, "val")``), never the test split. The fitted combiner (``core.analyze.combiners``) is
``runs/<id>/ensemble.json`` with the members' checkpoint signatures at fitting time: it is the
ensemble's "checkpoint" (``core.checkpoint.run_checkpoint``), so stored evaluations are keyed on
it, and a member retrained since is refused with what to do.

Evaluating an ensemble on a split combines its members' stored predictions of that split (each
member is predicted once, and reused), and stores the result in the same ``eval/<split>.npz``
format as any run, so every metric, plot and page works unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.analyze import combiners
from core.analyze import evaluate as ev
from core.atomic import write_atomic
from core.checkpoint import checkpoint_signature
from core.errors import InvalidConfig, InvalidRunState

if TYPE_CHECKING:
    from core.runs.records import Run
    from core.workspace import Workspace

logger = logging.getLogger(__name__)

ENSEMBLE_FILE = "ensemble.json"
FORMAT_VERSION = 1


# -- the run and its stored combiner ------------------------------------------------------------


def combiner_path(ws: Workspace, run_id: str) -> Path:
    return ws.run_dir(run_id) / ENSEMBLE_FILE


def is_ensemble(loaded: Any) -> bool:
    """Whether a loaded run (``core.models.loaded.load_run``) is an ``EnsembleRun``."""
    return hasattr(loaded, "members") and hasattr(loaded, "combiner")


def members_of(run: Run) -> tuple[list[str], str]:
    """The member run ids and the method an ensemble run's config names."""
    section = run.config.get("ensemble")
    if run.kind != "ensemble" or not section:
        raise InvalidRunState(f"Run {run.id} is not an ensemble (its kind is {run.kind}).")
    return list(section["members"]), str(section["method"])


def read_combiner(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The fitted combiner of ensemble ``run_id``; refused if a member changed since fitting."""
    path = combiner_path(ws, run_id)
    if not path.is_file():
        raise InvalidRunState(f"Ensemble {run_id} has no fitted combiner ({ENSEMBLE_FILE}); "
                              "its creation failed or was interrupted: create it again with "
                              "`python -m core ensemble RUN RUN ...`.")
    combiner = json.loads(path.read_text())
    for member, recorded in combiner["member_signatures"].items():
        if checkpoint_signature(ws, member) != recorded:
            raise InvalidRunState(
                f"Member {member} of ensemble {run_id} changed since the ensemble was fitted "
                "(its checkpoint was rewritten): create a new ensemble of the current runs.")
    return combiner


def write_combiner(ws: Workspace, run_id: str, combiner: dict[str, Any]) -> Path:
    """Atomically (temp file in the same folder, then ``os.replace``): a reader sees the old
    combiner or the new one, never half of one."""
    return write_atomic(combiner_path(ws, run_id),
                        lambda out: json.dump(combiner, out, indent=2), mode="w",
                        prefix=".ensemble-", suffix=".json")


# -- creating and fitting -------------------------------------------------------------------------


def check_members(ws: Workspace, members: Sequence[str]) -> list[Run]:
    """The member runs, if they can form an ensemble: at least two distinct runs, each with a
    checkpoint (or a fitted combiner), all of one dataset as it is now."""
    from core.data import check_fingerprint

    runs = [ws.store.get_run(m) for m in members]
    datasets = {r.dataset for r in runs}
    if len(datasets) > 1:
        named = ", ".join(f"{r.id} ({r.dataset})" for r in runs)
        raise InvalidConfig(f"Members of an ensemble must share one dataset; got {named}.")
    for r in runs:
        if r.kind == "cv_fold" or r.config["data"].get("fold") is not None:
            # Its val split is its own fold: fitting on the members' val would mix splits.
            raise InvalidConfig(f"Run {r.id} is a cross-validation fold, validated on its own "
                                "fold: use the final model trained on all of train+val.")
        if r.config["data"].get("train_on_val"):
            # The combiner is fitted on val: a member that trained on it would look perfect.
            raise InvalidConfig(f"Run {r.id} trained on the validation split (train_on_val), "
                                "which the ensemble is fitted on: use runs validated on val.")
        if checkpoint_signature(ws, r.id) is None:
            raise InvalidRunState(f"Run {r.id} has no checkpoint yet: train it for at least "
                                  "one epoch before using it in an ensemble.")
        check_fingerprint(ws, r.summary.get("dataset_fingerprint"), r.dataset, run_id=r.id)
    if len(set(members)) != len(members):
        raise InvalidConfig("Each member run may appear only once in an ensemble.")
    if len(members) < 2:
        raise InvalidConfig("An ensemble needs at least two member runs.")
    return runs


def ensemble_config(first: Run, members: Sequence[str], method: str) -> dict[str, Any]:
    """The ensemble's config: the members' data section (without an input size: each member
    keeps its own), ``model.name = "ensemble"``, and the ``ensemble`` section."""
    from core.config import ModelConfig

    data = {**first.config["data"], "image_size": None}
    data.update({k: None for k in ("cv", "fold") if k in data})  # not a cross-validation run
    model = {**ModelConfig().__dict__, "name": "ensemble"}
    return {"data": data, "model": model, "train": dict(first.config["train"]),
            "ensemble": {"members": list(members), "method": method}}


def create_ensemble(ws: Workspace, members: Sequence[str], method: str = "soft",
                    name: str = "", progress: ev.ProgressFn | None = None) -> Run:
    """Record an ensemble run of ``members`` and fit its combiner on val (in this process:
    it takes seconds once the members' val predictions exist). The run ends ``completed``, or
    ``failed`` with the error, which is raised again."""
    combiners.check_method(method)
    runs = check_members(ws, members)
    config = ensemble_config(runs[0], members, method)
    run = ws.store.create_run(config, name=name, kind="ensemble", parent_run=runs[0].id)
    folder = ws.run_dir(run.id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    ws.store.update_run(run.id, total_epochs=0, summary={
        "dataset_fingerprint": runs[0].summary.get("dataset_fingerprint"),
        "members": list(members), "method": method})
    # This process fits it: its pid lets reconcile tell a slow fit from a dead one.
    from core.runs.processes import process_start_time

    ws.store.update_run(run.id, pid=os.getpid(), pid_start=process_start_time(os.getpid()))
    ws.store.set_status(run.id, "running")
    try:
        combiner = fit_ensemble(ws, run.id, progress)
    except BaseException as exc:
        ws.store.set_status(run.id, "failed", error=str(exc) or type(exc).__name__)
        raise
    ws.store.update_run(run.id, summary={"weights": combiner["weights"],
                                         "fitted_on": combiner["fitted_on"]})
    ws.store.set_status(run.id, "completed")
    ws.store.add_event(run.id, "completed",
                       f"Ensemble of {len(members)} runs ({method}) fitted on val")
    return ws.store.get_run(run.id)


def fit_ensemble(ws: Workspace, run_id: str, progress: ev.ProgressFn | None = None
                 ) -> dict[str, Any]:
    """Fit the combiner of ensemble ``run_id`` on its members' **val** predictions only, and
    store it (``ensemble.json``)."""
    members, method = members_of(ws.store.get_run(run_id))
    val = member_predictions(ws, members, "val", progress=progress)
    probs, y, index = align(val)
    combiner = combiners.fit(method, probs, y)
    fitted = combiners.combine(combiner, probs)
    combiner.update(
        format=FORMAT_VERSION, members=members, dataset=val[0].dataset, classes=val[0].classes,
        member_signatures={m: checkpoint_signature(ws, m) for m in members},
        fitted_on={"split": "val", "samples": int(len(y))},
        val_accuracy={"members": [_accuracy(y, p) for p in probs],
                      "ensemble": _accuracy(y, fitted)},
        created_at=time.time())
    write_combiner(ws, run_id, combiner)
    return combiner


def member_predictions(ws: Workspace, members: Sequence[str], split: str,
                       **kwargs: Any) -> list[ev.Predictions]:
    """Each member's stored predictions of ``split`` (made once if missing or stale)."""
    preds = [ev.evaluate(ws, m, split, **kwargs) for m in members]
    first = preds[0]
    for p in preds[1:]:
        if p.dataset != first.dataset or list(p.classes) != list(first.classes):
            raise InvalidConfig(
                f"Members {first.run_id} and {p.run_id} do not share a dataset and classes "
                f"({first.dataset}: {len(first.classes)} classes, {p.dataset}: "
                f"{len(p.classes)}); an ensemble needs both.")
    return preds


def align(preds: Sequence[ev.Predictions]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The members' probabilities on the samples every member could read, in split order,
    with their labels and positions (a corrupt image skipped by one member is left out)."""
    index = reduce(np.intersect1d, [p.index for p in preds])
    rows = [np.isin(p.index, index) for p in preds]
    probs = [p.probs[r] for p, r in zip(preds, rows, strict=True)]
    y = preds[0].y_true[rows[0]]
    if not len(index):
        raise InvalidConfig("The members have no readable sample in common.")
    return probs, y, index


def _accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == y).mean())


# -- evaluating -----------------------------------------------------------------------------------


def evaluate_ensemble(ws: Workspace, run_id: str, split: str, **kwargs: Any) -> ev.Predictions:
    """Combine the members' predictions of ``split`` and store them like any run's
    (``eval/<split>.npz``; ``logits`` holds the log of the combined probabilities, so
    temperature scaling still applies)."""
    started = time.perf_counter()
    combiner = read_combiner(ws, run_id)
    signature = checkpoint_signature(ws, run_id)
    preds = member_predictions(ws, combiner["members"], split, **kwargs)
    probs, y, index = align(preds)
    combined = combiners.combine(combiner, probs)
    first = preds[0]
    keep = np.isin(first.index, index)
    skipped = np.setdiff1d(reduce(np.union1d, [np.concatenate([p.index, p.skipped])
                                               for p in preds]), index)
    out = ev.Predictions(
        run_id=run_id, split=split, dataset=first.dataset, classes=list(first.classes),
        ids=first.ids[keep], index=index, y_true=y,
        logits=np.log(np.maximum(combined, combiners.EPS)).astype(np.float32), probs=combined,
        signature=signature or "", skipped=skipped.astype(np.int64), checkpoint=ENSEMBLE_FILE,
        seconds=time.perf_counter() - started + sum(p.seconds for p in preds),
        created_at=time.time())
    path = ev.write_predictions(out, ev.eval_path(ws, run_id, split))
    ws.store.add_artifact(run_id, f"eval/{split}", str(path.relative_to(ws.home)))
    return out


def diversity(ws: Workspace, run_id: str, split: str = "test") -> dict[str, Any]:
    """Why the ensemble helps or not: each member's accuracy next to the ensemble's, and the
    pairwise disagreement (share of samples two members predict differently) on ``split``."""
    combiner = read_combiner(ws, run_id)
    members = combiner["members"]
    preds = member_predictions(ws, members, split)
    probs, y, _ = align(preds)
    combined = ev.evaluate(ws, run_id, split)
    return {
        "split": split, "members": members, "method": combiner["method"],
        "weights": combiner["weights"],
        "member_accuracy": {m: _accuracy(y, p) for m, p in zip(members, probs, strict=True)},
        "ensemble_accuracy": _accuracy(combined.y_true, combined.probs),
        "disagreement": combiners.disagreement([p.argmax(axis=1) for p in probs]).tolist(),
    }
