"""Where the workspace's jobs run, beside the queue on Home: the executor (local processes or a
Ray cluster) and the cluster's address, shown and switched with the checks of
``python -m core executor`` (one copy of them: ``core.runs.executors.configure``)."""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from core.runs.executors import EXECUTOR_ENV, configure, executor_source
from core.runs.executors.ray import ray_address
from core.runs.store import Store
from core.workspace import EXECUTORS
from ui.state import flash

LABELS = {"local": "Local processes", "ray": "Ray cluster"}


def render_executor(s: Store) -> None:
    """An expander titled with where jobs run; inside, a form to switch it."""
    source = executor_source(s)
    try:
        current = configure(s)["executor"]
    except UserError as exc:  # e.g. the setting says ray, but this store is SQLite now
        st.error(str(exc))
        current = "local"
    address = ray_address(s)
    panel = st.expander(f"Jobs run on {_where(current, address)}", icon=":material/hub:",
                        key="home_executor_panel", on_change="rerun")
    if not panel.open:  # the form's widgets are drawn only when asked for (see ui.jobs)
        return
    with panel:
        fixed = source in ("--executor", EXECUTOR_ENV)
        with st.form("home_executor_form", border=False):
            choice = st.radio(
                "Executor", EXECUTORS, index=EXECUTORS.index(current), key="home_executor",
                format_func=LABELS.get, horizontal=True, disabled=fixed,
                help=f"Set by {source}." if fixed else
                "A Ray cluster places each job on a machine with free CPUs/GPUs; it needs a "
                "PostgreSQL run store that every machine reaches.")
            typed = st.text_input("Ray address", value=address, key="home_ray_address",
                                  help="auto (the cluster this machine joined), host:6379 or "
                                       "http://host:8265 (the dashboard).")
            if not st.form_submit_button("Apply", disabled=fixed):
                return
        try:
            done = configure(s, choice, typed if typed != address else None)
        except UserError as exc:
            st.error(str(exc))
            return
        flash(f"Jobs queued from now on run on {_where(done['executor'], done['ray_address'])}.")
        st.rerun()


def _where(executor: str, address: str) -> str:
    return f"Ray at {address}" if executor == "ray" else "local processes"
