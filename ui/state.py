"""Session state shared by every page: the workspace (with its run store) and the active run.

The cache boundary is here, at the UI edge: ``core`` caches nothing Streamlit-specific.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import streamlit as st

from core import runs
from core.errors import RunNotFound
from core.runs.store import Run, Store
from core.workspace import Workspace, resolve_home

ACTIVE_RUN = "active_run"  # the run every page works on (sidebar picker, Train, later pages)
ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """The workspace in use (``$LAB2MARKET_HOME``, else ``./workspace``)."""
    return resolve_home()


def workspace() -> Workspace:
    """This session's workspace: its paths and its connection to the run store.

    One per session rather than one cached for the whole server: a SQLite connection shared by
    the threads of several sessions would interleave their write transactions.
    """
    path = home()
    held = st.session_state.get("_workspace")
    if held is None or held.home != path:
        if held is not None:  # the workspace moved ($LAB2MARKET_HOME changed): let the old go
            held.close()
        held = Workspace(path)
        st.session_state["_workspace"] = held
    return held


def store() -> Store:
    """This session's connection to the run store (``workspace().store``)."""
    return workspace().store


def reconciled_store() -> Store:
    """The store, after marking runs whose process died as interrupted (cheap: active runs only)."""
    s = store()
    runs.reconcile(s)
    return s


def active_run_id() -> str | None:
    return st.session_state.get(ACTIVE_RUN)


def set_active_run(run_id: str | None) -> None:
    st.session_state[ACTIVE_RUN] = run_id


def active_run(s: Store) -> Run | None:
    """The active run, or None (also when it was deleted meanwhile)."""
    run_id = active_run_id()
    if not run_id:
        return None
    try:
        return s.get_run(run_id)
    except RunNotFound:  # deleted meanwhile (another tab, the CLI): forget it
        set_active_run(None)
        return None


def adopt_run_from_url() -> None:
    """``?run=ID`` in the URL makes that run the active one, so a link to a run can be shared."""
    wanted = st.query_params.get("run")
    if wanted and wanted != st.session_state.get("_url_run"):
        st.session_state["_url_run"] = wanted
        set_active_run(wanted)


def flash(message: str, kind: str = "success") -> None:
    """A message shown once, on the next run of the page (after ``st.rerun``)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def render_flashes() -> None:
    for kind, message in st.session_state.pop("_flash", []):
        getattr(st, kind)(message)


@st.cache_data(show_spinner=False)
def app_version() -> str:
    try:
        return metadata.version("lab2market")
    except metadata.PackageNotFoundError:
        found = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                          re.MULTILINE)
        return found.group(1) if found else "dev"


# -- datasets: cheap metadata cached briefly, loaded samples cached as resources ----------------


@st.cache_data(ttl=60, show_spinner=False)
def _dataset_infos(home_path: str) -> list:
    from core.data import list_datasets

    with Workspace.open(home_path) as ws:
        return list_datasets(ws)


def dataset_infos() -> dict:
    """``{name: DatasetInfo}`` of every built-in and imported dataset in the workspace."""
    return {info.name: info for info in _dataset_infos(str(home()))}


@st.cache_resource(max_entries=4, show_spinner="Loading the dataset...")
def load_dataset(name: str, home_path: str):
    """A loaded dataset, shared by sessions: read it, never mutate it."""
    from core.data import load_dataset as load

    with Workspace.open(home_path) as ws:
        return load(ws, name)


def forget_datasets() -> None:
    """Call after an import or a delete, so every list shows the workspace as it is."""
    _dataset_infos.clear()
    load_dataset.clear()
