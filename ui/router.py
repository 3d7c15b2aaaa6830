"""The router: how every page gets the app's shell (shared state and sidebar), in one place.

``app.py`` calls :func:`enter_app` then :func:`run_page` (:func:`render_shell`, then the page);
every page in ``pages/`` starts with :func:`require_router`. Nothing else touches Streamlit's
routing.

Why a workaround at all: a folder named ``pages/`` beside ``app.py`` turns on Streamlit's legacy
multipage mode (``PagesManager.uses_pages_directory``, a private class attribute that Streamlit
sets from the folder's existence and that only ``st.navigation`` turns off). While it is on, a deep
link such as ``/train`` runs ``pages/train.py`` alone, without ``app.py``, so without the sidebar
and the shared state. That happens to a tab reconnecting after a server restart (no session has
run ``app.py`` yet), and ``AppTest`` turns the mode back on before every run. The folder keeps its
name (the project's specified layout), so :func:`require_router` turns the mode off itself.
``tests/test_page_router.py`` fails loudly if a Streamlit upgrade renames or drops the attribute.
"""

from __future__ import annotations

import streamlit as st

from ui.components import render_sidebar
from ui.state import ACTIVE_RUN, adopt_run_from_url, store

ROUTED = "_routed"  # session state: this session has run through app.py at least once
WARMED = "_warm_parent"  # session state: this session warmed the app up (warm parent, preload)
LEGACY_FLAG = "uses_pages_directory"  # the private PagesManager attribute this module flips


def pages_manager() -> type | None:
    """Streamlit's ``PagesManager`` class, or None for a Streamlit without it."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return None
    return PagesManager


def legacy_mode_on() -> bool:
    """True while Streamlit would run a page of ``pages/`` on its own (the legacy mode)."""
    manager = pages_manager()
    return bool(manager is not None and getattr(manager, LEGACY_FLAG, False))


def enter_app() -> None:
    """``app.py``'s first step: the session's shared state, and a mark that it was routed."""
    st.session_state[ROUTED] = True
    _shared_state()


def _shared_state() -> None:
    st.session_state.setdefault(ACTIVE_RUN, None)
    adopt_run_from_url()


def render_shell() -> None:
    """What every page shares: the sidebar (workspace, active run picker, version)."""
    render_sidebar(store())


def require_router() -> None:
    """First line of every page: make sure it has the app's shell, however Streamlit ran it.

    Through ``app.py`` (the legacy mode is off) this does nothing. Run alone: turn the legacy mode
    off, then on the session's first run (no widget event to lose) rerun through ``app.py``;
    otherwise keep this run and draw the shell here, as ``app.py`` would have.
    """
    if not legacy_mode_on():
        return
    setattr(pages_manager(), LEGACY_FLAG, False)
    if not st.session_state.get(ROUTED):
        st.rerun()
    _shared_state()
    render_shell()


def run_page(page) -> None:
    """Draw the shell and the page; a full or read-only workspace is one line, not a traceback.

    Every store write or file a page makes can meet a full or read-only disk; the message is the
    same one the CLI prints (``core.errors.workspace_error``), whichever page met it.
    """
    from core.errors import workspace_error
    from core.workspace import home_path

    try:
        render_shell()
        page.run()
        _warm_up_after_the_page()
    except Exception as exc:  # Streamlit's own rerun/stop signals are BaseExceptions: untouched
        problem = workspace_error(exc, home_path())
        if problem is None:
            raise
        st.error(str(problem), icon=":material/storage:")


def _warm_up_after_the_page() -> None:
    """Once a session, after its first page is drawn: make sure a warm job parent is up (the
    first Launch then starts warm) and import torch, torchvision's models and captum in the
    background (the first in-page model finds them imported). Not before the page: both take
    the CPU for seconds, and a server's first visitor would wait for them (about 1.5 s on two
    cores)."""
    if st.session_state.get(WARMED):
        return
    st.session_state[WARMED] = True
    from core.runs.warm import preload_in_background, prestart

    prestart()
    preload_in_background()
