"""The Train page's view of a cross-validation parent (a run of kind ``cv``) and its K folds.

While a fold is queued or running the view is a fragment that reruns every 2 s: the parent's
status, each fold's progress, and the folds' validation curves overlaid. Once every fold has
ended it shows the summary (mean ± std over the completed folds, each fold's value and, for
tables, the scikit-learn baselines on the same folds) and offers to train the final model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from core import runs
from core.errors import RunNotFound, UserError
from core.runs.cv import fold_runs, sync
from core.runs.series import Series, epoch_rows, merge
from core.runs.store import Run, Store
from core.workspace import Workspace
from ui.clicks import act_once
from ui.components import render_status_badge
from ui.format import plain
from ui.runs import run_label
from ui.state import active_run_id, flash, set_active_run, store, workspace

REFRESH = 2.0  # seconds: folds run for minutes, a fold's epoch shows within 2 s
CURVE_KEYS = ("epoch", "val/loss", "val/acc")
CURVES = {"val/loss": ("Validation loss per fold", "loss"),
          "val/acc": ("Validation accuracy per fold", "accuracy")}
FOLD_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")
BASELINES = {"logistic_regression": "logistic regression",
             "gradient_boosting": "gradient boosting"}
FIRST_METRICS = ("val/acc", "val/loss")  # the summary's first rows: what the folds validate


def render_cv(parent: Run, below: Callable[[Store], None] | None = None) -> None:
    """The view of the CV ``parent``: live while a fold is active, with the summary after.

    ``below(store)`` draws what must stay in step with it (the Train page's runs table).
    """
    if parent.is_active:
        _live_cv(parent.id, below)
    else:
        _ended_cv(parent.id, below)


@st.fragment(run_every=REFRESH)
def _live_cv(parent_id: str, below: Callable[[Store], None] | None) -> None:
    _leave_if_switched(parent_id)
    s = store()
    runs.reconcile(s)  # a fold whose process died shows as interrupted (and syncs the parent)
    parent = _synced(s, parent_id)
    if parent is not None:
        render_cv_progress(s, parent, fold_runs(s, parent_id))
    if below is not None:
        below(s)
    if parent is not None and not parent.is_active:
        st.rerun()  # every fold ended: the whole page switches to the summary, polling stops


@st.fragment
def _ended_cv(parent_id: str, below: Callable[[Store], None] | None) -> None:
    _leave_if_switched(parent_id)
    s = store()
    parent = _synced(s, parent_id)
    if parent is not None:
        render_cv_progress(s, parent, fold_runs(s, parent_id))
        render_cv_summary(parent)
    if below is not None:
        below(s)


def _leave_if_switched(parent_id: str) -> None:
    """A row picked in the runs table changed the active run: redraw the whole page."""
    if active_run_id() != parent_id:
        st.rerun()


def _synced(s: Store, parent_id: str) -> Run | None:
    try:
        return sync(s, parent_id)
    except RunNotFound:
        st.info(f"Run {parent_id} no longer exists.")
        return None


# -- progress: the parent, its folds, their curves -----------------------------------------------


def render_cv_progress(s: Store, parent: Run, folds: list[Run]) -> None:
    head = st.columns([3, 1])
    head[0].markdown(f"**{plain(run_label(parent))}** · `{parent.id}` · "
                     f"{len(folds)}-fold cross-validation")
    with head[1]:
        render_status_badge(parent, key="train_cv_status")
    ended = sum(not f.is_active for f in folds)
    st.progress(1.0 if parent.status == "completed" else parent.progress,
                text=f"{ended} of {len(folds)} folds ended · epochs {parent.epoch}/"
                     f"{parent.total_epochs} over all folds")
    if parent.status == "failed":
        st.error(f"The cross-validation failed: {plain(parent.error or 'unknown error')}. "
                 "Pick a fold in the runs table below to see its log.")
    elif parent.status in ("cancelled", "interrupted"):
        st.info(f"The cross-validation is {parent.status}: Resume continues its unfinished folds "
                "from their last checkpoints.")
    st.dataframe(folds_frame(folds), key="train_cv_folds", hide_index=True, width="stretch",
                 column_config={
                     "Progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0),
                     "val/loss": st.column_config.NumberColumn(format="%.4f"),
                     "val/acc": st.column_config.NumberColumn(format="%.4f")})
    render_fold_curves(s, folds)


def folds_frame(folds: list[Run]) -> pd.DataFrame:
    """One row per fold: status, progress, last validation figures, best epoch."""
    rows = []
    for fold in folds:
        final = fold.summary.get("final", {})
        rows.append({
            "Fold": fold.config["data"]["fold"], "Run": fold.id, "Status": fold.status,
            "Progress": 1.0 if fold.status == "completed" else fold.progress,
            "Epoch": f"{fold.epoch}/{fold.total_epochs}",
            "val/loss": final.get("val/loss"), "val/acc": final.get("val/acc"),
            "Best epoch": fold.summary.get("best_epoch", {}).get("epoch"),
        })
    return pd.DataFrame(rows, columns=["Fold", "Run", "Status", "Progress", "Epoch", "val/loss",
                                       "val/acc", "Best epoch"])


@st.cache_data(ttl=30, max_entries=256, show_spinner=False)
def fold_series(home: str, run_id: str, marker: tuple) -> dict[str, Series]:
    """A fold's epoch-level validation series (``marker`` changes when the fold progresses)."""
    with Workspace.open(home) as ws:
        rows = ws.store.get_metrics(run_id, keys=CURVE_KEYS)
    series: dict[str, Series] = {}
    merge(series, rows)
    return series


def fold_curves(s: Store, folds: list[Run], key: str) -> dict[str, tuple[list, list]]:
    """``{"fold i": (epochs, values)}`` of ``key`` for the folds that logged an epoch."""
    curves = {}
    for fold in folds:
        marker = (fold.status, fold.step, fold.epoch, fold.pid)
        rows = [r for r in epoch_rows(fold_series(str(s.home), fold.id, marker)) if key in r]
        if rows:
            curves[f"fold {fold.config['data']['fold']}"] = (
                [r["epoch"] for r in rows], [r[key] for r in rows])
    return curves


def render_fold_curves(s: Store, folds: list[Run]) -> None:
    columns = st.columns(len(CURVES))
    for column, (key, (title, y_title)) in zip(columns, CURVES.items(), strict=True):
        curves = fold_curves(s, folds, key)
        with column:
            if curves:
                st.plotly_chart(fold_curves_figure(curves, title, y_title),
                                key=f"train_cv_{key.split('/')[1]}_chart")
            else:
                st.caption(f"{title}: the curves appear when a fold ends its first epoch.")


def fold_curves_figure(curves: dict[str, tuple[list, list]], title: str, y_title: str):
    """One line per fold on shared axes (x: epoch), so a fold that behaves apart stands out."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (label, (x, y)) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=x, y=y, name=label, mode="lines+markers",
                                 line={"color": FOLD_COLORS[i % len(FOLD_COLORS)], "width": 2},
                                 marker={"size": 6}))
    fig.update_layout(
        title={"text": title, "font": {"size": 14}}, height=320,
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, xaxis_title="epoch", yaxis_title=y_title,
        legend={"orientation": "h", "y": -0.25}, uirevision=title, hovermode="x unified")
    fig.update_xaxes(tickformat="d")  # epochs are whole numbers, even with one point
    return fig


# -- the summary and the final model ------------------------------------------------------------


def render_cv_summary(parent: Run) -> None:
    """Mean ± std over the completed folds, each fold's value, the baselines; the final model."""
    with st.spinner("Summarizing the folds (and fitting the scikit-learn baselines once)..."):
        summary = _summary(parent.id)
    st.subheader("Cross-validation summary")
    for status, ids in summary["not_completed"].items():
        if ids:
            st.warning(f"{len(ids)} fold(s) {status} ({', '.join(ids)}): the figures below are "
                       "over the completed folds only.")
    if not summary["metrics"]:
        st.info("No fold completed, so there is nothing to average.")
        return
    frame = summary_frame(summary)
    st.dataframe(frame, key="train_cv_summary", hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in frame.columns if c.startswith("Fold ")})
    baseline = summary["baseline"]
    if "error" in baseline:
        st.caption(f"No scikit-learn baseline: {plain(baseline['error'])}")
    elif baseline:
        st.caption("The baselines are fitted on the same folds (each on its fold's train rows, "
                   "scored on its validation rows): if they match the network, it may not be "
                   "worth it.")
    render_final_model(parent, summary)


def _summary(parent_id: str) -> dict[str, Any]:
    from core.analyze.cv import cv_summary

    return cv_summary(workspace(), parent_id)


def summary_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """Rows of (model, metric): mean ± std, then one column per fold (blank if it did not
    complete). The network's rows come first, then each baseline's."""
    k = summary["k"]
    fold_columns = [f"Fold {i}" for i in range(k)]
    rows = []
    per_fold = {f["fold"]: f["final"] for f in summary["folds"] if f["status"] == "completed"}
    network = f"network ({summary['model']})"
    for metric in _ordered(summary["metrics"]):
        stats = summary["metrics"][metric]
        values = [per_fold.get(i, {}).get(metric) for i in range(k)]
        rows.append(_row(network, metric, stats, values, fold_columns))
    for name, metrics in summary["baseline"].items():
        if name == "error":
            continue
        for metric in _ordered(metrics):
            stats = metrics[metric]
            rows.append(_row(BASELINES.get(name, name), metric, stats, stats["folds"],
                             fold_columns))
    return pd.DataFrame(rows, columns=["Model", "Metric", "Mean ± std", *fold_columns])


def _ordered(metrics: dict[str, Any]) -> list[str]:
    return [m for m in FIRST_METRICS if m in metrics] + sorted(
        m for m in metrics if m not in FIRST_METRICS)


def _row(model: str, metric: str, stats: dict[str, Any], values: list, columns: list[str]
         ) -> dict[str, Any]:
    row = {"Model": model, "Metric": metric,
           "Mean ± std": f"{stats['mean']:.4f} ± {stats['std']:.4f}"}
    row.update({c: (None if v is None else float(v))
                for c, v in zip(columns, values, strict=False)})
    return row


def render_final_model(parent: Run, summary: dict[str, Any]) -> None:
    """The final model: its runs so far, and the button that trains one on all of train+val."""
    from core.data.folds import TRAIN_ON_VAL_NOTE
    from core.runs.cv import launch_final

    best, epochs = summary["best_epoch"], summary["final_epochs"]
    if best:
        st.caption(f"Best epoch over the folds: {best['mean']:.1f} ± {best['std']:.1f}.")
    for final in summary["final_runs"]:
        st.caption(f"Final model `{final['run_id']}`: {final['status']}, {final['epochs']} "
                   "epoch(s) on train+val.")
    busy = any(f["status"] in ("queued", "running") for f in summary["final_runs"])
    clicked = st.button(
        "Train the final model", key="train_cv_final", type="primary",
        disabled=epochs is None or busy, icon=":material/model_training:",
        help=f"A normal run with this config for {epochs or '?'} epoch(s) (the folds' mean best "
             f"epoch) on all of train+val. {TRAIN_ON_VAL_NOTE}")
    if not clicked or epochs is None:
        return
    try:
        run = act_once("cv_final", (parent.id, epochs),
                       lambda: launch_final(store(), parent.id, epochs))
    except UserError as exc:
        st.error(str(exc))
        return
    set_active_run(run.id)
    flash(f"Launched the final model {run.id} ({epochs} epoch(s)) in the background. "
          f"{TRAIN_ON_VAL_NOTE}")
    st.rerun()
