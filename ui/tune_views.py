"""The Tune page's views: the new-study form (search space in a data editor) and a study's live
view (trials table, Optuna's pictures, stop / resume / promote).

Everything Optuna does happens in ``core.tune``; this module draws what it returns. A study is
watched in a fragment that reruns every 2 s while its driver is active.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core import tune
from core.config import RunConfig
from core.errors import RunNotFound, UserError
from core.models import default_model
from core.runs import max_jobs, reconcile
from core.runs.store import Run, Store
from core.tune.spec import EPOCH_METRICS, MODEL_METRICS, PRUNER_HELP, SAMPLER_HELP
from ui import format as fmt
from ui.clicks import act_once
from ui.components import render_status_badge
from ui.format import plain
from ui.runs import MAX_COMPARED, compare_on_evaluate
from ui.state import flash, set_active_run, store
from ui.train_form import model_choices, model_spec, suggested_config

REFRESH = 2.0  # seconds: a trial's epoch shows within 2 s
STUDY_KEY = "tune_study"  # the study the page shows
OPEN_STUDY = "_tune_open_study"  # a study another page asked this one to show (render_tune_link)
SPACE_COLUMNS = ["Tune", "Parameter", "Kind", "Low", "High", "Choices"]


# -- the new-study form ---------------------------------------------------------------------------


def space_frame(base: RunConfig, modality: str) -> pd.DataFrame:
    """The default search space of the model, one editable row per hyperparameter."""
    rows = []
    for p in tune.default_space(base, modality, model_spec(base.model.name)):
        rows.append({"Tune": True, "Parameter": p.name, "Kind": p.kind, "Low": p.low,
                     "High": p.high, "Choices": p.choices_text})
    return pd.DataFrame(rows, columns=SPACE_COLUMNS)


def rows_to_specs(frame: pd.DataFrame) -> list[str]:
    """The ticked rows as ``--param`` texts (the engine checks them)."""
    specs = []
    for row in frame.to_dict("records"):
        if not row.get("Tune") or not str(row.get("Parameter") or "").strip():
            continue
        name, kind = str(row["Parameter"]).strip(), str(row.get("Kind") or "")
        if kind == "choice":
            specs.append(f"{name}=choice:{str(row.get('Choices') or '').replace(' ', '')}")
        else:
            specs.append(f"{name}={kind}:{_cell(row.get('Low'))}:{_cell(row.get('High'))}")
    return specs


def _cell(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else f"{value:g}" \
        if isinstance(value, float) else str(value)


def render_new_study(s: Store, infos: dict[str, Any]) -> None:
    """Dataset and model, objectives, budget, sampler, pruner, the search space; Launch starts
    the study in the background and shows it."""
    with st.container(border=True):
        st.subheader("New study")
        left, right = st.columns(2)
        dataset = left.selectbox("Dataset", list(infos), key="tune_dataset")
        info = infos[dataset]
        choices = model_choices(info.modality)
        if st.session_state.get("tune_model") not in choices:
            st.session_state["tune_model"] = default_model(info.modality)  # as Train does
        model = right.selectbox("Model", choices, key="tune_model")
        base = suggested_config(info, model)
        with st.form("tune_form", border=False):
            _render_settings(s)
            st.markdown("**Search space** · untick a row to keep the base value; add a row for "
                        "any other config field")
            space = st.data_editor(
                space_frame(base, info.modality), key="tune_space", num_rows="dynamic",
                hide_index=True, width="stretch", column_config={
                    "Kind": st.column_config.SelectboxColumn(options=list(tune.KINDS),
                                                             required=True),
                    "Low": st.column_config.NumberColumn(format="%g"),
                    "High": st.column_config.NumberColumn(format="%g")})
            submitted = st.form_submit_button("Launch study", type="primary",
                                              icon=":material/science:")
        if submitted:
            _launch(s, base, info.modality, space)


def _render_settings(s: Store) -> None:
    c = st.columns(4)
    c[0].selectbox("Metric", EPOCH_METRICS, key="tune_metric",
                   help="What each trial is judged by (its best epoch).")
    c[1].selectbox("Direction", ("maximize", "minimize"), key="tune_direction")
    c[2].selectbox("Second objective", ("none", *MODEL_METRICS), key="tune_objective2",
                   help="Several objectives: Optuna finds the Pareto front (NSGA-II suits it); "
                        "pruning is off. " + "; ".join(f"{k}: {v}" for k, v in
                                                      MODEL_METRICS.items()))
    c[3].selectbox("Sampler", tune.SAMPLERS, key="tune_sampler",
                   format_func=lambda n: n, help=" · ".join(f"{k}: {v}" for k, v in
                                                            SAMPLER_HELP.items()))
    c = st.columns(4)
    c[0].number_input("Trials", 1, 500, 20, key="tune_trials")
    c[1].number_input("Time limit (min, 0: none)", 0.0, 10_000.0, 0.0, key="tune_timeout",
                      help="No trial starts after this; running ones finish.")
    c[2].selectbox("Pruner", tune.PRUNERS, key="tune_pruner",
                   help=" · ".join(f"{k}: {v}" for k, v in PRUNER_HELP.items()))
    limit, _ = max_jobs(s)
    c[3].number_input("Trials at once", 1, 16, 1, key="tune_parallel",
                      help=f"The queue runs at most {limit} training job(s) at once; more wait.")
    c = st.columns(4)
    c[0].number_input("Epochs per trial", 1, 1000, 5, key="tune_epochs")
    c[1].number_input("Seed", 0, 2**31 - 1, 0, key="tune_seed",
                      help="The same study and seed suggest the same trials.")
    c[2].text_input("Name", key="tune_name", placeholder="optional label")


def _launch(s: Store, base: RunConfig, modality: str, space: pd.DataFrame) -> None:
    ss = st.session_state
    try:
        raw = base.to_dict()
        raw["train"].update(epochs=int(ss["tune_epochs"]), seed=int(ss["tune_seed"]))
        base = RunConfig.from_dict(raw)
        metrics = [ss["tune_metric"]] + ([ss["tune_objective2"]]
                                         if ss["tune_objective2"] != "none" else [])
        directions = [ss["tune_direction"]] + [tune.default_direction(m) for m in metrics[1:]]
        params = [tune.parse_param(text, base) for text in rows_to_specs(space)]
        trials = int(ss["tune_trials"])
        if ss["tune_sampler"] == "grid" and params:  # a grid has as many trials as points
            trials = min(trials, tune.default_trials("grid", params))
        spec = tune.StudySpec(
            metrics=metrics, directions=directions, sampler=ss["tune_sampler"],
            pruner="none" if len(metrics) > 1 else ss["tune_pruner"], n_trials=trials,
            timeout=float(ss["tune_timeout"]) * 60 or None, parallel=int(ss["tune_parallel"]),
            seed=int(ss["tune_seed"]), params=[p.to_dict() for p in params])
        with st.spinner("Starting the study..."):
            name = ss.get("tune_name") or ""
            study = act_once("tune", (base.to_dict(), spec.to_dict(), name),
                             lambda: tune.launch_study(s, base, spec, name=name))
    except UserError as exc:
        st.error(str(exc))
        return
    ss[STUDY_KEY] = study.id
    flash(f"Launched study {study.id}: {spec.n_trials} trial(s) of {plain(base.model.name)} on "
          f"{plain(base.data.dataset)}.")
    st.rerun()


# -- a study --------------------------------------------------------------------------------------


def render_tune_link(run: Run) -> None:
    """On Train, for a study or one of its trials: what it is, and a button to its study."""
    study_id = run.id if run.kind == tune.STUDY_KIND else run.parent_run
    if run.kind == tune.STUDY_KIND:
        st.info("This run is a tuning study: it trains nothing itself. Its trials, their plots, "
                "Stop, Resume and Promote are on the Tune page.")
    else:
        number = run.summary.get("trial", {}).get("number")
        st.caption(f"Trial {number} of study {study_id}.")
    if st.button("Open the study on Tune", key=f"tune_link_{run.id}", icon=":material/tune:"):
        st.session_state[OPEN_STUDY] = study_id
        st.switch_page("pages/tune.py")


def pick_study(s: Store) -> str | None:
    """The study picker (newest first; the one just launched preselected)."""
    found = tune.list_studies(s)
    if not found:
        st.info("No study yet: launch one above.")
        return None
    by_id = {r.id: r for r in found}
    if st.session_state.get(OPEN_STUDY) in by_id:
        st.session_state[STUDY_KEY] = st.session_state.pop(OPEN_STUDY)
    if st.session_state.get(STUDY_KEY) not in by_id:
        st.session_state[STUDY_KEY] = found[0].id
    # No status in the label: the view below keeps it live, a label would go stale.
    return st.selectbox("Study", list(by_id), key=STUDY_KEY, format_func=lambda i: (
        f"{by_id[i].name or i} · {by_id[i].dataset}/{by_id[i].model} · {i}"))


def render_study(study_id: str) -> None:
    """Live while the study runs (every 2 s), then once."""
    try:
        study = store().get_run(study_id)
    except RunNotFound:
        st.info(f"Study {study_id} no longer exists.")
        return
    if study.is_active:
        _live(study_id)
    else:
        _ended(study_id)


@st.fragment(run_every=REFRESH)
def _live(study_id: str) -> None:
    s = store()
    reconcile(s)  # a dead driver or trial shows as interrupted; syncs the study's status
    study = _synced(s, study_id)
    _render(s, study)
    if not study.is_active:
        st.rerun()  # ended: the whole page redraws once, polling stops


@st.fragment
def _ended(study_id: str) -> None:
    s = store()
    _render(s, _synced(s, study_id))


def _synced(s: Store, study_id: str) -> Run:
    try:
        return tune.sync_study(s, study_id)
    except RunNotFound:  # deleted meanwhile (the CLI, another tab): the page redraws without it
        st.rerun()


def _render(s: Store, study: Run) -> None:
    try:
        summary = tune.study_summary(s, study.id)
    except UserError as exc:  # its Optuna storage is damaged or out of reach: say so, in a line
        render_status_badge(study, key="tune_status")
        st.error(str(exc))
        return
    head = st.columns([4, 1])
    head[0].markdown(f"**{plain(study.name or study.id)}** · `{study.id}` · "
                     f"{plain(summary['dataset'])}/{plain(summary['model'])} · "
                     f"{summary['sampler']} sampler, {summary['pruner']} pruner")
    with head[1]:
        render_status_badge(study, key="tune_status")
    ended = sum(r["state"] in ("complete", "pruned", "failed") for r in summary["trials"])
    st.progress(min(1.0, ended / max(summary["n_trials"], 1)),
                text=f"{ended} of {summary['n_trials']} trials ended · "
                     + ", ".join(f"{n} {k}" for k, n in sorted(summary["counts"].items())))
    if study.error:
        st.error(f"The study {study.status}: {plain(study.error)}")
    _render_best(summary)
    _render_actions(s, study)
    with st.container(key="tune_trials_table"):  # a keyed box: tests and screenshots find it
        st.dataframe(trials_frame(summary), hide_index=True, width="stretch",
                     column_config={"Run": st.column_config.LinkColumn(
                         display_text=r"run=(.*)$", help="Open the trial's run on the Train "
                                                         "page")})
    _render_compare(summary)
    _render_plot(s, study.id, len(summary["metrics"]) > 1)


def _render_compare(summary: dict[str, Any]) -> None:
    """The best completed trials, side by side on Evaluate (metrics, ROC): they are runs."""
    best = tune.best_trial_runs(summary, MAX_COMPARED)
    label = f"Compare the best {len(best)} trials on Evaluate" if len(best) > 1 else \
        "Compare the best trials on Evaluate (two completed trials needed)"
    if st.button(label, key="tune_compare", icon=":material/compare_arrows:",
                 disabled=len(best) < 2,
                 help="Opens Evaluate on the best completed trials (accuracy, F1, ROC side by "
                      "side); any run can be added there."):
        compare_on_evaluate(best)


def _render_best(summary: dict[str, Any]) -> None:
    best = summary["best"]
    if not best:
        return
    c = st.columns([1, 3])
    c[0].metric(f"Best {summary['metrics'][0]}", f"{best['value']:.4f}",
                help=f"Trial {best['number']}, run {best['run_id']}")
    c[1].markdown("**Best params** · " + plain(", ".join(
        f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}"
        for k, v in best["params"].items())))


def trials_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per trial: number, state, value, params, epochs, duration, a link to its run."""
    rows = []
    for t in summary["trials"]:
        row = {"#": t["number"], "State": t["state"], "Value": t["value"]}
        row.update({k: (round(v, 6) if isinstance(v, float) else v)
                    for k, v in t["params"].items()})
        row.update({"Epochs": t["epochs"], "Duration": fmt.duration(t["duration_s"]),
                    "Run": f"train?run={t['run_id']}" if t["run_id"] else None})
        rows.append(row)
    return pd.DataFrame(rows)


def _render_actions(s: Store, study: Run) -> None:
    c = st.columns([1, 1, 1, 1, 1])
    try:
        if c[0].button("Stop", key="tune_stop", icon=":material/stop:", width="stretch",
                       disabled=not study.is_active):
            with st.spinner("Stopping the study (running trials save a checkpoint)..."):
                act_once("tune_stop", study.id, lambda: tune.cancel_study(s, study.id))
            flash(f"Stopped study {study.id}; Resume continues it.", "info")
            st.rerun()
        more = c[1].number_input("More trials", 0, 500, 0, key="tune_more",
                                 label_visibility="collapsed",
                                 help="Trials to add when resuming (0: finish the budget)")
        if c[2].button("Resume", key="tune_resume", icon=":material/replay:", width="stretch",
                       disabled=study.is_active):
            act_once("tune_resume", (study.id, int(more)),
                     lambda: tune.resume_study(s, study.id, trials=int(more) or None))
            flash(f"Resumed study {study.id}.", "info")
            st.rerun()
        epochs = c[3].number_input("Promote epochs", 1, 1000, int(study.config["train"]["epochs"]),
                                   key="tune_promote_epochs", label_visibility="collapsed",
                                   help="Epochs of the full run trained with the best params")
        if c[4].button("Promote best", key="tune_promote", icon=":material/upgrade:",
                       width="stretch"):
            run = act_once("tune_promote", (study.id, int(epochs)),
                           lambda: tune.promote(s, study.id, epochs=int(epochs)))
            set_active_run(run.id)
            flash(f"Promoted the best trial of {study.id}: run {run.id} is training.")
            st.switch_page("pages/train.py")
    except UserError as exc:
        st.error(str(exc))


def _render_plot(s: Store, study_id: str, multi: bool) -> None:
    from core.tune.plots import PLOTS, PlotUnavailable, plot_names, study_figure

    names = plot_names(multi)
    if st.session_state.get("tune_plot") not in names:
        st.session_state["tune_plot"] = names[0]
    name = st.segmented_control("Picture", names, key="tune_plot",
                                format_func=lambda n: PLOTS[n][0])
    try:
        st.plotly_chart(study_figure(s, study_id, name or names[0]), key="tune_chart",
                        width="stretch")
    except PlotUnavailable as exc:
        st.caption(str(exc))
