"""Evaluate: how good is this model, where does it fail, and is it better than the last one?

Pick runs and a split; the predictions come from ``runs/<id>/eval/<split>.npz`` (made once by a
background job, with progress) and every number and chart is derived from that file.
"""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from ui import state
from ui.evaluate_gallery import render_confusion, render_top_losses
from ui.evaluate_views import (
    derived,
    ensure_predictions,
    fresh_predictions,
    render_calibration,
    render_cards,
    render_compare,
    render_curves,
    render_per_class,
)
from ui.format import plain
from ui.router import require_router
from ui.runs import (
    EVAL_FOLLOWS,
    EVAL_RUNS,
    MAX_COMPARED,
    preferred_run,
    run_label,
    runs_with_checkpoint,
)

TABS = ("Per class", "Confusion matrix", "ROC & PR", "Calibration", "Top losses")


def pick_runs(runs: list) -> tuple[list, str]:
    """The runs multiselect and the split. The first run, shown in detail, is the active run
    (else the newest completed one); the others are compared with it."""
    by_id = {r.id: r for r in runs}
    active = state.active_run_id()
    if EVAL_RUNS not in st.session_state:  # a visit to the page starts on the preferred run
        chosen = [preferred_run(runs).id]
    else:
        chosen = [i for i in st.session_state[EVAL_RUNS] if i in by_id]
        if active in by_id and active != st.session_state.get(EVAL_FOLLOWS) \
                and chosen[:1] != [active]:  # the active run changed elsewhere: show it first
            chosen = [active, *(i for i in chosen if i != active)][:MAX_COMPARED]
    st.session_state[EVAL_FOLLOWS] = active
    st.session_state[EVAL_RUNS] = chosen
    left, right = st.columns([4, 1])
    ids = left.multiselect("Runs", list(by_id), key=EVAL_RUNS, max_selections=MAX_COMPARED,
                           format_func=lambda i: run_label(by_id[i], status=True),
                           on_change=_follow_first,
                           help="The first run is shown in detail; add others to compare.")
    split = right.segmented_control("Split", ["test", "val"], key="eval_split", default="test")
    return [by_id[i] for i in ids], split or "test"


def _follow_first() -> None:
    """The run shown in detail becomes the active run, as a pick on any page does."""
    ids = st.session_state.get(EVAL_RUNS) or []
    if ids:
        state.set_active_run(ids[0])


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
runs = runs_with_checkpoint(s)
if not runs:
    st.info("No trained run yet: train one on the Train page first.")
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
    st.subheader(plain(run_label(chosen[0])))
    render_run(*ready[0])
if len(ready) >= 2:
    st.subheader("Compare runs")
    render_compare(ready)
elif len(chosen) >= 2:
    st.caption("The comparison appears when at least two of the chosen runs are evaluated.")
