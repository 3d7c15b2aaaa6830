"""The workspace's trackers on the Train page: an MLflow URI and a TensorBoard folder that every
run of the workspace logs to (``python -m core trackers``), unless the run's own fields (Advanced
options) name another target or say ``off``."""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from core.train.sinks import OFF, SETTING, TRACKERS, check_target, set_workspace_target
from ui import state
from ui.format import plain

LABELS = {"mlflow": "MLflow tracking URI", "tensorboard": "TensorBoard folder"}
PLACEHOLDERS = {"mlflow": "http://127.0.0.1:5000 (empty or off: none)",
                "tensorboard": "/path/to/tb (relative: inside the workspace)"}


def render_tracker_settings() -> None:
    s = state.store()
    current = {t: s.get_setting(SETTING.format(t)) or OFF for t in TRACKERS}
    on = ", ".join(f"{t} {plain(v)}" for t, v in current.items() if v != OFF)
    title = f"Trackers for every run: {on or 'off'}"
    with st.expander(title, icon=":material/monitoring:"):
        st.caption("Every run of this workspace also logs to these (params, metrics, machine "
                   "readings, checkpoint and ONNX files), unless its own fields under Advanced "
                   "options name another target or say off. A tracker that fails only warns.")
        with st.form("train_trackers_form", border=False):
            c = st.columns(2)
            for col, tracker in zip(c, TRACKERS, strict=True):
                key = f"train_ws_{tracker}"
                st.session_state.setdefault(key, "" if current[tracker] == OFF
                                            else current[tracker])
                col.text_input(LABELS[tracker], key=key, placeholder=PLACEHOLDERS[tracker])
            saved = st.form_submit_button("Save for every run", icon=":material/save:")
    if saved:
        save({t: st.session_state[f"train_ws_{t}"] for t in TRACKERS})


def save(values: dict[str, str]) -> None:
    s = state.store()
    try:
        for tracker in TRACKERS:  # both checked before either is stored
            check_target(tracker, values[tracker])
        for tracker in TRACKERS:
            set_workspace_target(s, tracker, values[tracker])
    except UserError as exc:
        st.error(str(exc))
        return
    shown = ", ".join(f"{t} {plain(v.strip() or OFF)}" for t, v in values.items())
    state.flash(f"Every run of this workspace now logs to: {shown}.", "info")
    st.rerun()

