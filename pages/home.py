"""Home: what the app does, the newest runs at a glance, and a one-click first training run."""

from __future__ import annotations

import streamlit as st

from core import runs
from core.config import RunConfig
from core.errors import UserError
from core.runs.store import Store
from ui import state
from ui.clicks import act_once
from ui.components import RECENT_ROWS, render_recent_runs
from ui.executor import render_executor
from ui.jobs import render_queue
from ui.router import require_router
from ui.runs import newest_running

QUICK_EPOCHS = 10
LIVE_REFRESH = 2.0  # seconds between refreshes of the runs table while runs are active


def quick_config() -> RunConfig:
    """A small CNN on the built-in digits: about a minute on a laptop CPU."""
    cfg = RunConfig()
    cfg.data.dataset, cfg.model.name = "digits", "smallcnn"
    cfg.train.epochs, cfg.train.batch_size = QUICK_EPOCHS, 32
    return cfg


def render_quick_start(s: Store) -> None:
    if not st.button("Train a digits model now", key="home_quick_start", type="primary",
                     icon=":material/rocket_launch:",
                     help=f"A small CNN on the built-in 8x8 digits, {QUICK_EPOCHS} epochs."):
        return
    try:
        run = act_once("home_quick_start", None,
                       lambda: runs.launch(s, quick_config(), name="digits quick start"))
    except UserError as exc:
        st.error(str(exc))
        return
    state.set_active_run(run.id)
    state.flash(f"Launched run {run.id}: watch it learn below.")
    st.switch_page("pages/train.py")


def render_counts(s: Store) -> None:
    """One line of counts. Not metric tiles: their script chunks (number formatting) cost a new
    visitor's browser about a tenth of a second before Home can paint (benchmarks/ui_latency.py).
    """
    # Read first: on a server's first visit listing the datasets builds the built-ins (seconds),
    # and the line appears whole instead of with a gap where the datasets come late.
    datasets = len(state.dataset_infos())
    active = s.count_runs(status="running") + s.count_runs(status="queued")
    with st.container(key="home_counts"):
        st.markdown(f":material/science: **{s.count_runs()}** runs · "
                    f":blue-badge[{active} running or queued] · "
                    f":green-badge[{s.count_runs(status='completed')} completed] · "
                    f":material/dataset: **{datasets}** datasets")


def render_runs(s: Store) -> None:
    render_counts(s)
    render_queue(s)
    render_executor(s)
    st.subheader("Recent runs")
    render_recent_runs(s, key="home_runs")
    if s.count_runs() > RECENT_ROWS:
        st.page_link("pages/train.py", label="Every run, with filters and search, on Train",
                     icon=":material/list:")


@st.fragment(run_every=LIVE_REFRESH)
def render_runs_live() -> None:
    """While runs are queued or running, the counts and the table follow them."""
    s = state.reconciled_store()
    render_runs(s)
    if newest_running(s) is None:
        st.rerun()  # all finished: the whole page, drawn once, without polling


require_router()
st.title("Lab2Market")
st.markdown(
    "Take a PyTorch classifier from the lab to the market in one browser tab.  \n"
    "**Import** images or a table, **train** in the background and watch it learn live, "
    "then evaluate, explain and ship it.  \n"
    "Every action here is also a command: `python -m core --help`.")
state.render_flashes()
s = state.reconciled_store()
render_quick_start(s)
if newest_running(s) is not None:
    render_runs_live()
else:
    render_runs(s)
if state.active_run_id():
    st.page_link("pages/train.py", label="Open the active run on Train",
                 icon=":material/monitoring:")
