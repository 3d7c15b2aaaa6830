"""How every page names, filters and picks runs: one label, one checkpoint filter, one picker.

The active run (``ui.state.ACTIVE_RUN``) is the run every page works on. A page picker shows the
runs that page can use, preselects the active run (else the newest completed one), and a pick
makes that run the active one, so the sidebar and every page agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from core.checkpoint import run_checkpoint
from core.runs.store import Run, Store
from ui.format import plain
from ui.state import active_run, active_run_id, set_active_run, workspace

RECENT = 100  # how many recent runs a picker offers
MAX_COMPARED = 4  # runs side by side on Evaluate (Tune's "Compare" preselects that many)
EVAL_RUNS = "eval_runs"  # Evaluate's run picker: the first run in detail, the others compared
EVAL_FOLLOWS = "_eval_active"  # the active run that picker last put first


def run_label(run: Run, *, status: bool = False) -> str:
    """How a run is named everywhere: ``name · dataset/model`` (the id when it has no name).

    Plain text: pass it through ``ui.format.plain`` before it goes into Markdown.
    """
    label = f"{run.name or run.id} · {run.dataset}/{run.model}"
    return f"{label} · {run.status}" if status else label


def monitored_metric(run: Run) -> str:
    """The metric whose best value the run records (``best_metric``), e.g. ``val/loss``."""
    return run.config.get("train", {}).get("monitor", "val/loss")


def has_checkpoint(run: Run) -> bool:
    """Whether ``run`` can be evaluated, predicted with, explained or exported."""
    return run_checkpoint(workspace(), run.id) is not None


def runs_with_checkpoint(s: Store, limit: int = RECENT) -> list[Run]:
    """The recent runs that have a checkpoint, newest first; also the active run if it has one
    (however old)."""
    runs = [r for r in s.list_runs(limit=limit) if has_checkpoint(r)]
    active = active_run(s)
    if active is not None and active.id not in {r.id for r in runs} and has_checkpoint(active):
        runs.insert(0, active)
    return runs


def newest_running(s: Store) -> Run | None:
    """The newest running run, else the newest queued one (started here, in another tab or by
    the CLI)."""
    for status in ("running", "queued"):
        found = s.list_runs(limit=1, status=status)
        if found:
            return found[0]
    return None


def preferred_run(runs: Sequence[Run]) -> Run | None:
    """The run a page shows first: the active run if offered, else the newest completed one,
    else the newest (``runs`` come newest first)."""
    active = active_run_id()
    for run in runs:
        if run.id == active:
            return run
    return next((r for r in runs if r.status == "completed"), runs[0] if runs else None)


def pick_run(runs: Sequence[Run], key: str, label: str = "Run", *, help: str | None = None,
             optional: bool = False) -> Run | None:
    """The one run picker: a selectbox of ``runs`` keyed ``key``; a pick becomes the active run.

    It follows the active run when that run is offered (another page or the sidebar changed it).
    Otherwise an ``optional`` picker (the sidebar's) shows nothing picked; a page's picker keeps
    its own choice, else starts on :func:`preferred_run`.
    """
    by_id = {r.id: r for r in runs}
    active = active_run_id()
    if active in by_id:
        st.session_state[key] = active
    elif optional:
        st.session_state[key] = None
    elif st.session_state.get(key) not in by_id:
        st.session_state[key] = preferred_run(runs).id
    run_id = st.selectbox(label, list(by_id), key=key, index=None, placeholder="Pick a run",
                          format_func=lambda i: run_label(by_id[i], status=True), help=help,
                          on_change=lambda: set_active_run(st.session_state.get(key)))
    return by_id.get(run_id)


def pick_run_with_checkpoint(s: Store, key: str, label: str = "Run") -> Run | None:
    """A page's picker of the runs that have a checkpoint; None, with a hint, when none has."""
    runs = runs_with_checkpoint(s)
    active = active_run(s)
    if active is not None and active.id not in {r.id for r in runs}:
        st.caption(f"The active run {plain(run_label(active))} has no checkpoint yet (it needs "
                   "one finished epoch): pick a trained run.")
    if not runs:
        st.info("No trained run yet: train one on the Train page first.")
        return None
    return pick_run(runs, key, label,
                    help="Runs with a checkpoint; the one you pick becomes the active run.")


def render_sidebar_picker(s: Store, limit: int = 25) -> None:
    """The sidebar's picker of the active run, over every recent run."""
    runs = s.list_runs(limit=limit)
    active = active_run(s)
    if active is not None and active.id not in {r.id for r in runs}:
        runs.insert(0, active)
    if not runs:
        st.caption("No runs yet.")
        return
    st.caption("Active run")
    # The picker is drawn only while its popover is open: every page shows this sidebar, and a
    # select box on a first visit costs its script chunks before the page can paint.
    box = st.popover(plain(run_label(active, status=True)) if active else "None picked",
                     key="sidebar_run_panel", on_change="rerun", width="stretch",
                     icon=":material/swap_horiz:",
                     help="The run that Train, Evaluate, Predict, Explain and Deploy work on.")
    if box.open:
        with box:
            pick_run(runs, "sidebar_run", "Active run", optional=True)


def compare_on_evaluate(run_ids: Sequence[str]) -> None:
    """Open Evaluate on ``run_ids`` side by side, the first in detail (it becomes the active
    run, so the picker does not move another run before it)."""
    ids = list(run_ids)[:MAX_COMPARED]
    set_active_run(ids[0])
    st.session_state[EVAL_RUNS] = ids
    st.session_state[EVAL_FOLLOWS] = ids[0]
    st.switch_page("pages/evaluate.py")
