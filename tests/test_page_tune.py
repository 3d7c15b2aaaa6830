"""The Tune page (AppTest through the router): the form's defaults and its one-line errors, a
study launched from it and trained by real queued jobs, its trials table and pictures, promote;
the page never imports torch."""

from __future__ import annotations

from pathlib import Path

from conftest import assert_clean, frame_with, heavy_modules_after_page, open_page, wait_for

from core.runs import reconcile
from core.runs.records import TERMINAL
from core.runs.store import Store
from core.tune import StudySpec, sync_study
from ui import clicks

LAUNCH = "FormSubmitter:tune_form-Launch study"


def test_form_defaults_and_a_bad_grid_is_one_line(home: Path) -> None:
    at = open_page("pages/tune.py")
    assert (at.selectbox(key="tune_metric").value, at.selectbox(key="tune_direction").value,
            at.selectbox(key="tune_sampler").value, at.selectbox(key="tune_pruner").value) == (
        "val/acc", "maximize", "tpe", "median")
    assert at.selectbox(key="tune_model").value == "smallcnn"  # the model Train preselects too
    assert any("No study yet" in i.value for i in at.info)
    at.selectbox(key="tune_sampler").set_value("grid")
    at.button(key=LAUNCH).click().run()
    assert_clean(at)
    assert [e.value for e in at.error] == [
        "The grid sampler needs choice: or int: rows; lr=loguniform:0.0001:0.1 is loguniform "
        "(give lr=choice:A,B,... instead)."]
    with Store(home) as store:
        assert store.list_runs() == []
    found = heavy_modules_after_page("pages/tune.py", home, "", modules=("torch", "optuna"))
    assert found == {"torch": False, "optuna": False}


def test_launch_a_study_watch_its_trials_and_promote(home: Path, monkeypatch) -> None:
    at = open_page("pages/tune.py")
    at.selectbox(key="tune_model").set_value("mlp").run()
    at.number_input(key="tune_epochs").set_value(1)
    at.number_input(key="tune_trials").set_value(2)
    at.selectbox(key="tune_sampler").set_value("random")
    at.button(key=LAUNCH).click().run()
    assert_clean(at)
    # Clicked again before the page showed the study: the same study, not a second one (the
    # window is widened so that a slow machine cannot make this a test of its speed).
    monkeypatch.setattr(clicks, "REPEAT_S", 600.0)
    at.button(key=LAUNCH).click().run()
    assert_clean(at)

    store = Store(home)
    assert [r.id for r in store.list_runs() if r.kind == "study"] == [at.session_state[
        "tune_study"]]
    study_id = at.session_state["tune_study"]
    study = store.get_run(study_id)
    spec = StudySpec.from_dict(study.summary["study"])
    assert (study.kind, study.model, study.config["train"]["epochs"]) == ("study", "mlp", 1)
    assert (spec.sampler, spec.n_trials, spec.metrics) == ("random", 2, ["val/acc"])
    assert {p.name for p in spec.space} >= {"lr", "batch_size", "optimizer", "dropout"}

    def ended() -> bool:
        reconcile(store)
        return sync_study(store, study_id).status in TERMINAL
    wait_for(ended, timeout=300, interval=0.5, message="the 2 trials")
    assert store.get_run(study_id).status == "completed"

    trial = next(t for t in store.child_runs(study_id) if t.kind == "trial")
    at = open_page("pages/train.py", active_run=trial.id)  # a trial on Train: its study on Tune
    assert any(f"of study {study_id}" in c.value for c in at.caption)
    at.button(key=f"tune_link_{trial.id}").click().run()
    assert_clean(at)
    assert at.session_state["tune_study"] == study_id  # switched to Tune, the study shown

    at = open_page("pages/tune.py", tune_study=study_id)
    trials = frame_with(at, "State")
    assert list(trials["#"]) == [0, 1] and set(trials["State"]) == {"complete"}
    assert {"lr", "batch_size", "Value", "Run"} <= set(trials.columns)
    assert at.metric[0].label == "Best val/acc"
    assert at.get("plotly_chart")  # the optimisation history
    values = dict(zip(trials["Run"].str.removeprefix("train?run="), trials["Value"], strict=True))
    at.button(key="tune_compare").click().run()  # the two trials, best first, on Evaluate
    assert_clean(at)
    ranked = sorted(values, key=values.get, reverse=True)
    assert at.multiselect(key="eval_runs").value == ranked  # Evaluate's picker, as drawn
    assert at.session_state["active_run"] == ranked[0]

    at = open_page("pages/tune.py", tune_study=study_id)
    at.button(key="tune_promote").click().run()
    assert_clean(at)
    promoted = store.get_run(at.session_state["active_run"])
    assert promoted.kind == "trained" and promoted.summary["promoted_from"]["study"] == study_id
    from core import runs
    runs.cancel(store, promoted.id)  # leave nothing running
    assert not heavy_modules_after_page("pages/tune.py", home, "", tune_study=study_id)["torch"]
    store.close()
