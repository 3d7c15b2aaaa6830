"""Tune: search hyperparameters with Optuna. Pick the model, the objective, the budget, the sampler
and pruner and the search space; launch a study in the background; watch its trials fill in;
stop, resume with more trials, promote the best to a full run."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.router import require_router
from ui.tune_views import pick_study, render_new_study, render_study

require_router()
st.title("Tune")
state.render_flashes()
s = state.reconciled_store()

render_new_study(s, state.dataset_infos())

st.subheader("Studies")
study_id = pick_study(s)
if study_id is not None:
    render_study(study_id)
