"""The one watcher of background work that every page shares.

A page starts a job through a typed launcher (``core.runs.launchers``), then draws it here: a
progress bar while it is queued or running, refreshed in a fragment; when it ends, the whole page
redraws to show the result (or this draws the error). Statuses are compared, never error strings.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from core.errors import RunNotFound, UserError
from core.runs import max_jobs, reconcile, set_max_jobs
from core.runs.records import Job
from core.runs.store import Store
from ui import format as fmt
from ui.format import plain
from ui.state import flash, store


def render_job(job: Job | None, what: str) -> None:
    """A job's state, drawn once: progress while active, the reason when it did not complete."""
    if job is None:
        return
    if job.is_active:
        # The whole wait since the click, not only the work: a job's process needs seconds to
        # start before it reports any progress.
        waited = fmt.duration(time.time() - job.created_at)
        with st.container(key=f"job_progress_{job.kind}"):
            st.progress(job.progress,
                        text=f"{what}: {plain(_progress_text(job))} · {waited} so far")
    elif job.status in ("failed", "interrupted"):
        st.error(f"{what} {'failed' if job.status == 'failed' else 'was interrupted'}: "
                 f"{plain(job.error or 'no message')}")
    elif job.status == "cancelled":
        st.info(f"{what} was cancelled.")


def watch_job(job_id: str, what: str) -> None:
    """Follow a job live (every second); redraw the page once it has ended."""
    _watch(job_id, what)


@st.fragment(run_every="1s")
def _watch(job_id: str, what: str) -> None:
    s = store()
    reconcile(s)  # a job whose process died shows as interrupted, not running forever
    try:
        job = s.get_job(job_id)
    except RunNotFound:  # its run was deleted meanwhile: the page redraws without it
        st.rerun()
    if job.is_active:
        render_job(job, what)
        return
    st.rerun()  # ended: the page draws the result from what the job stored


def _progress_text(job: Job) -> str:
    if job.status == "queued":
        ahead = store().queue_position(job.id) if job.heavy else 0
        return f"queued ({ahead} ahead)" if ahead else "queued, starting soon"
    return job.message or "starting its process..."


def render_queue(s: Store) -> None:
    """The workspace queue: what runs and waits, and how many heavy jobs may run at once."""
    limit, source = max_jobs(s)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    left.subheader("Queue")
    # Drawn only while open: a widget kind on a page's first paint costs its script chunks
    # (a new visitor's browser fetches them from this server before it draws the page).
    limit_box = right.popover(f"{limit} training(s) at once", key="home_max_jobs_panel",
                              icon=":material/tune:", on_change="rerun", width="stretch")
    if limit_box.open:
        limit_box.number_input(
            "Trainings at once", min_value=1, max_value=64, value=limit, key="home_max_jobs",
            disabled=source == "LAB2MARKET_MAX_JOBS", on_change=_store_max_jobs, args=(s,),
            help="Heavy jobs (training) beyond this wait, in order, and start as slots free. "
                 + ("Set by $LAB2MARKET_MAX_JOBS." if source == "LAB2MARKET_MAX_JOBS" else
                    "Light jobs (evaluate, explain, export, serve) never wait."))
    jobs = s.active_jobs()
    if not jobs:
        st.caption("Nothing queued or running.")
        return
    st.dataframe(queue_frame(s, jobs), hide_index=True, width="stretch")


def queue_frame(s: Store, jobs: list[Job]) -> pd.DataFrame:
    rows = [{
        "Status": job.status,
        "Job": job.id,
        "Kind": job.kind,
        "Run": job.run_id,
        "Waits behind": s.queue_position(job.id) if job.status == "queued" and job.heavy
        else None,
        "Progress": _progress_text(job) if job.status == "running" else "",
        "Since": fmt.timestamp(job.started_at or job.created_at),
    } for job in jobs]
    return pd.DataFrame(rows, columns=["Status", "Job", "Kind", "Run", "Waits behind",
                                       "Progress", "Since"])


def _store_max_jobs(s: Store) -> None:
    try:
        set_max_jobs(s, st.session_state["home_max_jobs"])
    except UserError as exc:
        flash(str(exc), "error")
