"""Evaluate: how good is this model, where does it fail, and is it better than the last one?

Pick runs and a split; the predictions come from ``runs/<id>/eval/<split>.npz`` (made once by a
background task, with progress) and every number and chart is derived from that file.
"""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from ui import state
from ui.components import require_router
from ui.evaluate_gallery import render_confusion, render_top_losses
from ui.evaluate_views import (
    derived,
    ensure_predictions,
    evaluable_runs,
    fresh_predictions,
    render_calibration,
    render_cards,
    render_compare,
    render_curves,
    render_per_class,
    run_label,
)

MAX_COMPARED = 4
TABS = ("Per class", "Confusion matrix", "ROC & PR", "Calibration", "Top losses")


def pick_runs(runs: list) -> tuple[list, str]:
    """The runs multiselect (the active run by default) and the split."""
    by_id = {r.id: r for r in runs}
    chosen = [i for i in st.session_state.get("eval_runs", []) if i in by_id]
    if not chosen:
        active = state.active_run_id()
        chosen = [active if active in by_id else runs[0].id]
    st.session_state["eval_runs"] = chosen
    left, right = st.columns([4, 1])
    ids = left.multiselect("Runs", list(by_id), key="eval_runs", max_selections=MAX_COMPARED,
                           format_func=lambda i: f"{run_label(by_id[i])} · {by_id[i].status}",
                           help="The first run is shown in detail; add others to compare.")
    split = right.segmented_control("Split", ["test", "val"], key="eval_split", default="test")
    return [by_id[i] for i in ids], split or "test"


def render_run(run, preds, data) -> None:
    """Everything about one run's predictions, in tabs."""
    dataset = state.load_dataset(preds.dataset, str(state.home()))
    render_cards(preds, data["report"])
    tabs = st.tabs(TABS, key="eval_tab", on_change="rerun")
    renderers = (
        lambda: render_per_class(preds, data["report"]),
        lambda: render_confusion(preds, data, dataset),
        lambda: render_curves(preds, data),
        lambda: render_calibration(preds, preds if preds.split == "val"
                                   else fresh_predictions(run.id, "val")),
        lambda: render_top_losses(preds, dataset),
    )
    for tab, render in zip(tabs, renderers, strict=True):
        if tab.open:  # only the open tab runs: a click in it reruns just what it shows
            with tab:
                render()

require_router()
st.title("Evaluate")
state.render_flashes()
s = state.reconciled_store()
runs = evaluable_runs(s)
if not runs:
    st.info("No run has a checkpoint yet: train one on the Train page first.")
    st.stop()
chosen, split = pick_runs(runs)
if not chosen:
    st.info("Pick a run to evaluate.")
    st.stop()

ready = []
try:
    for run in chosen:
        preds = ensure_predictions(s, run, split)
        if preds is not None:
            ready.append((run, preds, derived(preds)))
except UserError as exc:
    st.error(str(exc))
    st.stop()

if ready and ready[0][0].id == chosen[0].id:
    st.subheader(run_label(chosen[0]))
    render_run(*ready[0])
if len(ready) >= 2:
    st.subheader("Compare runs")
    render_compare(ready)
elif len(chosen) >= 2:
    st.caption("The comparison appears when at least two of the chosen runs are evaluated.")
