"""Render helpers of the Evaluate page: stored predictions (or the job making them), metric
cards, the per-class table, ROC/PR, calibration and the comparison of runs.

Everything is derived from ``runs/<id>/eval/<split>.npz``; reading and deriving are cached on
(path, mtime), so reopening the page recomputes nothing. A missing or stale file is made here,
with the dashboard's warm copy of the model, when the split is small; else by a background job
(``python -m core evaluate``), whose progress is a fragment.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.analyze import metrics
from core.analyze.evaluate import Predictions, eval_path, is_fresh, read_predictions
from core.checkpoint import run_checkpoint
from core.runs import launchers
from core.runs.store import Run, Store
from ui import format as fmt
from ui import state
from ui.evaluate_charts import pr_figure, reliability_figure, roc_figure
from ui.explain_views import loaded_run, st_progress
from ui.format import plain
from ui.jobs import render_job, watch_job
from ui.runs import run_label
from ui.state import workspace

CARDS = (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced acc."),
         ("f1_macro", "Macro F1"), ("log_loss", "Log loss"), ("auc_macro", "ROC AUC (macro)"),
         ("ece", "ECE"))
COMPARED = ("accuracy", "balanced_accuracy", "top3_accuracy", "f1_macro", "f1_weighted",
            "precision_macro", "recall_macro", "log_loss", "auc_macro", "auc_weighted",
            "average_precision_macro", "ece")
BEST_COLOR = "background-color: #c8e6c9; font-weight: 600"
MAX_DEFAULT_CURVES = 10
# Splits up to this size are evaluated in the dashboard's process with its warm copy of the model
# (a second or less); larger ones, and runs still training, by a background job with progress.
WARM_EVAL_MAX_SAMPLES = 5_000


# -- stored predictions, cached on (path, mtime) ------------------------------------------------


@st.cache_data(max_entries=32, show_spinner=False)
def _read(path: str, mtime_ns: int) -> Predictions:
    return read_predictions(path)


@st.cache_data(max_entries=32, show_spinner="Computing the metrics...")
def _derived(path: str, mtime_ns: int) -> dict[str, Any]:
    p = _read(path, mtime_ns)
    counts, normalised = metrics.confusion(p.y_true, p.probs)
    return {"report": metrics.report(p.y_true, p.probs, p.classes),
            "roc": metrics.roc_curves(p.y_true, p.probs, p.classes),
            "pr": metrics.pr_curves(p.y_true, p.probs, p.classes),
            "counts": counts, "normalised": normalised}


@st.cache_data(max_entries=16, show_spinner=False)
def _calibration(path: str, mtime_ns: int, val_path: str, val_mtime_ns: int) -> dict[str, Any]:
    p, v = _read(path, mtime_ns), _read(val_path, val_mtime_ns)
    return metrics.temperature_scaling(v.logits, v.y_true, p.logits, p.y_true)


def _stamp(preds: Predictions) -> tuple[str, int]:
    return str(preds.path), preds.path.stat().st_mtime_ns


def fresh_predictions(run_id: str, split: str) -> Predictions | None:
    """The stored predictions when they match the run's checkpoint (cached), else None."""
    if not is_fresh(workspace(), run_id, split):
        return None
    path = eval_path(workspace(), run_id, split)
    return _read(str(path), path.stat().st_mtime_ns)


def derived(preds: Predictions) -> dict[str, Any]:
    return _derived(*_stamp(preds))


# -- the evaluation job ----------------------------------------------------------------------------


def ensure_predictions(s: Store, run: Run, split: str) -> Predictions | None:
    """The run's predictions on ``split``; if missing or stale, start (or follow) the job that
    makes them and return None."""
    found = fresh_predictions(run.id, split)
    if found is not None:
        return found
    label = plain(run_label(run))
    job = s.latest_job(run.id, "evaluate", split)
    if job is not None and job.is_active:
        watch_job(job.id, f"Evaluating {label}")
        return None
    ckpt = run_checkpoint(workspace(), run.id)
    since = ckpt.stat().st_mtime if ckpt else math.inf
    key = f"eval_start_{run.id}_{split}"
    if job is not None and job.status != "completed" and job.created_at >= since:
        render_job(job, f"Evaluating {label} on {split}")
        if not st.button("Retry", key=key, icon=":material/replay:"):
            return None
    elif run.is_active and not st.button(
            f"Evaluate the current checkpoint of {label}", key=key,
            help="The run is still training: its best checkpoint may change."):
        return None
    stale = eval_path(workspace(), run.id, split).is_file()
    if evaluates_here(run, split):
        return evaluate_here(run, split)
    job = launchers.start_evaluate(s, run.id, split)
    st.caption(("The checkpoint changed since the last evaluation: " if stale else "")
               + f"evaluating {label} on the {split} split in the background.")
    watch_job(job.id, f"Evaluating {label}")
    return None


def evaluates_here(run: Run, split: str) -> bool:
    """Whether the page evaluates ``run`` on ``split`` itself, with the dashboard's warm copy of
    the model, instead of a background job: a finished, single-model run and a small split,
    done in about the time a job process needs to import torch."""
    info = state.dataset_infos().get(run.dataset)
    size = info.split_counts.get(split, math.inf) if info is not None else math.inf
    return not run.is_active and run.kind != "ensemble" and size <= WARM_EVAL_MAX_SAMPLES


def evaluate_here(run: Run, split: str) -> Predictions:
    """What the evaluation job does, in this process with the warm model: ``split``, and the
    val split first for the calibration tab (as ``evaluate`` does by default), both stored."""
    from core.analyze.evaluate import evaluate
    from core.checkpoint import checkpoint_signature

    ws = workspace()
    bar = st.progress(0.0, text=f"Evaluating {plain(run_label(run))} on {split}...")
    model = loaded_run(str(ws.home), run.id, checkpoint_signature(ws, run.id))
    for each in dict.fromkeys(("val", split)):
        preds = evaluate(ws, run.id, each, loaded=model,
                         progress=st_progress(bar, f"Predicted ({each})"))
    bar.empty()
    return preds


# -- one run ---------------------------------------------------------------------------------------


def render_cards(preds: Predictions, report: dict[str, Any]) -> None:
    o = report["overall"]
    cols = st.columns(len(CARDS))
    for col, (key, label) in zip(cols, CARDS, strict=True):
        value = o.get(key)
        note = report["auc"].get("note") if key == "auc_macro" and report["auc"] else None
        col.metric(label, "n/a" if value is None else f"{value:.4f}", help=note)
    skipped = f" · {len(preds.skipped)} unreadable skipped" if len(preds.skipped) else ""
    st.caption(f"{o['samples']} samples of {plain(preds.dataset)}/{preds.split}{skipped} · "
               f"checkpoint {preds.checkpoint} · model time {preds.seconds:.2f} s (the pass "
               f"over the split, without loading) on {fmt.timestamp(preds.created_at)}")


def per_class_frame(report: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(report["per_class"]).rename(columns={
        "class": "Class", "precision": "Precision", "recall": "Recall", "f1": "F1",
        "support": "Support", "auc": "ROC AUC", "average_precision": "AP", "note": "Note"})
    frame["Note"] = frame["Note"].fillna("")
    return frame


def render_per_class(preds: Predictions, report: dict[str, Any]) -> None:
    frame = per_class_frame(report)
    st.dataframe(frame, key="eval_per_class", hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in ("Precision", "Recall", "F1", "ROC AUC", "AP")})
    st.download_button("Download CSV", frame.to_csv(index=False).encode(),
                       file_name=f"{preds.run_id}-{preds.split}-per-class.csv",
                       mime="text/csv", key="eval_csv", icon=":material/download:")
    note = report["auc"].get("note") if report["auc"] else None
    if note:
        st.caption(f"ROC AUC: {note}")


def render_curves(preds: Predictions, data: dict[str, Any]) -> None:
    classes = [str(c) for c in preds.classes]
    default = [classes[1]] if len(classes) == 2 else classes[:MAX_DEFAULT_CURVES]
    left, right = st.columns([4, 1])
    shown = left.multiselect("Classes", classes, default=default, key="eval_curve_classes")
    macro = right.toggle("Macro average", value=len(classes) > 2, key="eval_curve_macro")
    if macro:
        shown = [*shown, "macro"]
    missing = [c for c in shown if c != "macro" and c not in data["roc"]]
    a, b = st.columns(2)
    a.plotly_chart(roc_figure(data["roc"], shown, title="ROC (one-vs-rest)",
                              dash={"macro": "dash"}), key="eval_roc")
    b.plotly_chart(pr_figure(data["pr"], [c for c in shown if c != "macro"]), key="eval_pr")
    for name in missing:
        row = next(r for r in data["report"]["per_class"] if r["class"] == name)
        st.caption(f"{plain(name)}: {row['note']}")


def render_calibration(preds: Predictions, val: Predictions | None) -> None:
    if val is None:
        rel = metrics.reliability(preds.y_true, preds.probs)
        st.plotly_chart(reliability_figure(rel, None, None), key="eval_reliability")
        st.info("Temperature scaling is fitted on the validation split: evaluate the val split "
                "of this run to see the calibrated diagram.")
        return
    cal = _calibration(*_stamp(preds), *_stamp(val))
    left, right = st.columns([3, 1])
    left.plotly_chart(reliability_figure(cal["before"], cal["after"], cal["temperature"]),
                      key="eval_reliability")
    right.metric("Temperature", f"{cal['temperature']:.3f}",
                 help=f"Fitted on the val split ({cal['fitted_on']} samples) by minimising "
                      "its negative log-likelihood.")
    right.metric("ECE", f"{cal['after']['ece']:.4f}",
                 delta=f"{cal['after']['ece'] - cal['before']['ece']:+.4f}", delta_color="inverse")
    right.metric("NLL", f"{cal['after']['nll']:.4f}",
                 delta=f"{cal['after']['nll'] - cal['before']['nll']:+.4f}", delta_color="inverse")
    if preds.split == "val":
        right.caption("Fitted and applied on the same split: an optimistic view.")


# -- several runs ----------------------------------------------------------------------------------


def compare_frame(items: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """One row per run label, one column per metric (NaN where undefined)."""
    rows = {}
    for label, report in items:
        o = report["overall"]
        rows[label] = {k: (np.nan if o.get(k) is None else o[k]) for k in COMPARED}
        rows[label]["samples"] = o["samples"]
    frame = pd.DataFrame.from_dict(rows, orient="index")
    return frame.dropna(axis=1, how="all")


def highlight_best(frame: pd.DataFrame) -> Any:
    """A Styler marking the best value of each metric column (max, or min for losses)."""
    def best(col: pd.Series) -> list[str]:
        if col.name == "samples" or col.isna().all():
            return [""] * len(col)
        target = col.max() if metrics.better(str(col.name)) == "max" else col.min()
        return [BEST_COLOR if np.isclose(v, target) else "" for v in col]

    return frame.style.apply(best, axis=0).format(
        {c: "{:.4f}" for c in frame.columns if c != "samples"}, na_rep="n/a")


def render_compare(items: list[tuple[Run, Predictions, dict[str, Any]]]) -> None:
    labels = [f"{run_label(r)} ({r.id[-6:]})" for r, _, _ in items]
    if len({p.dataset for _, p, _ in items}) > 1:
        st.warning("These runs were evaluated on different datasets: compare with care.")
    frame = compare_frame([(label, d["report"]) for label, (_, _, d) in
                           zip(labels, items, strict=True)])
    st.dataframe(highlight_best(frame), key="eval_compare_table", width="stretch")
    st.caption("Best of each metric highlighted (lowest for log loss and ECE).")
    common = [c for c in items[0][1].classes if all(c in p.classes for _, p, _ in items)]
    curve = st.selectbox("ROC curve", ["macro", *map(str, common)], key="eval_compare_curve")
    curves = {label: d["roc"][curve] for label, (_, _, d) in zip(labels, items, strict=True)
              if curve in d["roc"]}
    st.plotly_chart(roc_figure(curves, list(curves), title=f"ROC · {curve}"),
                    key="eval_compare_roc")
