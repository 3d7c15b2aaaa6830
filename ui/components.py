"""Render helpers shared by the pages: the sidebar, the runs table, status badges, confirmations."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import streamlit as st

from core.errors import UserError
from core.runs.store import STATUSES, Run, Store
from ui import format as fmt
from ui.format import plain
from ui.runs import monitored_metric, render_sidebar_picker, run_label
from ui.state import app_version, flash, home, set_active_run

PAGE_SIZE = 20
RECENT_ROWS = 8  # runs listed on Home
GRAY = "#9e9e9e"  # a status without a colour of its own (one added to the store later)


def render_sidebar(store: Store) -> None:
    """The workspace in use, the active run picker shared by all pages, the app version."""
    with st.sidebar:
        with st.container(key="sidebar_workspace"):
            st.caption("Workspace")
            # Inline code, not st.code: a code block costs a new visitor's browser its 1.5 MB
            # syntax highlighter before the first page can paint.
            path = str(home())
            st.markdown(f"`{path}`" if "`" not in path else plain(path))
        render_sidebar_picker(store)
        st.caption(f"Lab2Market {app_version()}")


def render_status_badge(run: Run, key: str) -> None:
    with st.container(key=key):
        st.badge(run.status, color=fmt.STATUS_COLORS.get(run.status, "gray"))


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One display row per run: status, dataset, model, best monitored metric, times."""
    rows = []
    for r in runs:
        monitor = monitored_metric(r)
        final = r.summary.get("final", {})
        val_acc = final.get("val/acc")
        rows.append({
            "Status": [r.status],  # a one-item list: drawn as a coloured badge
            "Run": r.id,
            "Name": r.name,
            "Dataset": r.dataset,
            "Model": r.model,
            "Kind": r.kind if r.parent_run is None else f"{r.kind} of {r.parent_run}",
            "Best": f"{monitor} {fmt.number(r.best_metric)}" if r.best_metric is not None
            else "—",
            "Val acc": val_acc if isinstance(val_acc, float) and math.isfinite(val_acc) else None,
            "Epoch": f"{r.epoch}/{r.total_epochs}",
            "Created": fmt.timestamp(r.created_at),
            "Duration": fmt.duration(r.duration),
        })
    return pd.DataFrame(rows, columns=["Status", "Run", "Name", "Dataset", "Model", "Kind",
                                       "Best", "Val acc", "Epoch", "Created", "Duration"])


def render_runs_table(store: Store, key: str, page_size: int = PAGE_SIZE) -> list[Run]:
    """A filterable, paginated runs table; picking a row makes that run the active one.

    Only one page of runs is read from the store, so the table stays fast with thousands of runs.
    Returns the runs shown.
    """
    left, right = st.columns([1, 2])
    status = left.selectbox("Status", ["all", *STATUSES], key=f"{key}_status",
                            on_change=_first_page, args=(key,))
    search = right.text_input("Search", key=f"{key}_search", on_change=_first_page, args=(key,),
                              placeholder="run id, name, dataset or model")
    status_filter = None if status == "all" else status
    total = store.count_runs(status=status_filter, search=search)
    if total == 0:
        st.info("No runs match." if (status_filter or search) else "No runs yet.")
        return []
    pages = max(1, math.ceil(total / page_size))
    page = st.session_state.get(f"{key}_page", 1)
    if not 1 <= page <= pages:  # runs were deleted meanwhile: back to the first page
        _first_page(key)
        page = 1
    runs = store.list_runs(limit=page_size, offset=(page - 1) * page_size,
                           status=status_filter, search=search)
    st.session_state[f"{key}_ids"] = [r.id for r in runs]
    st.dataframe(
        runs_frame(runs), key=f"{key}_table", hide_index=True, on_select=_on_pick(key),
        selection_mode="single-row", width="stretch",
        column_config={
            "Status": st.column_config.MultiselectColumn(
                options=list(STATUSES), color=[fmt.STATUS_HEX.get(s, GRAY) for s in STATUSES]),
            "Val acc": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    if pages > 1:
        st.pagination(pages, key=f"{key}_page")
    st.caption(f"{total} run(s) · page {page} of {pages} · pick a row to make it the active run")
    return runs


def render_recent_runs(store: Store, key: str, limit: int = RECENT_ROWS) -> list[Run]:
    """The newest runs, a row each (name, status, best metric, when); a click opens one on Train.

    Light on purpose: buttons, badges and captions only, no data grid, so the page that shows it
    (Home) paints as fast as an empty app; the filterable table lives on the Train page.
    """
    runs = store.list_runs(limit=limit)
    if not runs:
        st.info("No runs yet: train one with the button above, or on the Train page.")
        return []
    for run in runs:
        name, facts = st.columns([1, 1], vertical_alignment="center")
        if name.button(plain(run_label(run)), key=f"{key}_open_{run.id}", type="tertiary",
                       icon=":material/open_in_new:", help=f"Open run {run.id} on Train"):
            set_active_run(run.id)
            st.switch_page("pages/train.py")
        monitor = monitored_metric(run)
        best = (f"best {plain(monitor)} {fmt.number(run.best_metric)}"
                if run.best_metric is not None else f"epoch {run.epoch}/{run.total_epochs}")
        color = fmt.STATUS_COLORS.get(run.status, "gray")
        facts.markdown(f":{color}-badge[{run.status}] {best} · {fmt.timestamp(run.created_at)}"
                       f" · {fmt.duration(run.duration)}")
    return runs


def _first_page(key: str) -> None:
    st.session_state.pop(f"{key}_page", None)


def _on_pick(key: str):
    def pick() -> None:
        event = st.session_state.get(f"{key}_table")
        rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
        if not rows and isinstance(event, dict):
            rows = list(event.get("selection", {}).get("rows", []))
        ids = st.session_state.get(f"{key}_ids", [])
        if rows and rows[0] < len(ids):
            set_active_run(ids[rows[0]])

    return pick


def render_delete_confirmation(prefix: str, message: str, delete: Callable[[], str]) -> None:
    """A warning with *Yes, delete* / *Keep it*; ``delete()`` acts and returns the flash text.

    The pending confirmation lives in ``st.session_state[f"{prefix}_confirm_delete"]``.
    """
    st.warning(message)
    yes, no, _ = st.columns([1, 1, 4])
    if yes.button("Yes, delete", key=f"{prefix}_delete_yes", type="primary"):
        try:
            done = delete()
        except UserError as exc:
            st.error(str(exc))
            return
        st.session_state.pop(f"{prefix}_confirm_delete", None)
        flash(done, "info")
        st.rerun()
    if no.button("Keep it", key=f"{prefix}_delete_no"):
        st.session_state.pop(f"{prefix}_confirm_delete", None)
        st.rerun()
