"""The Train page's comfort controls (AppTest through the router): the trackers every run of the
workspace logs to, and the batch-size finder as a real background job whose suggestion the
"Use" button puts into the form."""

from __future__ import annotations

from pathlib import Path

from conftest import assert_clean, open_page, wait_for

from core.runs import reconcile
from core.runs.jobs import DATASET_SUBJECT
from core.runs.store import Store
from core.train.batch_finder import KIND


def test_workspace_trackers_are_saved_for_every_run_and_a_bare_path_is_refused(home: Path):
    at = open_page("pages/train.py")
    at.text_input(key="train_ws_mlflow").input("mlruns")  # a path, not a tracking URI
    next(b for b in at.button if b.label == "Save for every run").click().run()
    assert_clean(at)
    assert any("mlflow must be a tracking URI" in e.value for e in at.error)
    store = Store(home)
    assert store.get_setting("tracker.mlflow") is None  # nothing stored, not even TensorBoard

    uri = (home / "mlruns").as_uri()
    at.text_input(key="train_ws_mlflow").input(uri)
    at.text_input(key="train_ws_tensorboard").input("tb")
    next(b for b in at.button if b.label == "Save for every run").click().run()
    assert_clean(at)
    assert (store.get_setting("tracker.mlflow"), store.get_setting("tracker.tensorboard")) == \
        (uri, "tb")
    title = next(e.label for e in at.expander if e.label.startswith("Trackers for every run"))
    assert "mlflow" in title and "tensorboard tb" in title  # the title says what is on

    at.text_input(key="train_ws_mlflow").input("")  # empty: off
    next(b for b in at.button if b.label == "Save for every run").click().run()
    assert store.get_setting("tracker.mlflow") == "off"
    store.close()


def test_the_batch_size_finder_runs_as_a_job_and_fills_the_form(home: Path):
    at = open_page("pages/train.py")
    model = at.session_state["train_model"]
    at.button(key="train_batch_find").click().run()
    assert_clean(at)
    store = Store(home)
    jobs = [j for j in store.list_jobs(run_id=f"{DATASET_SUBJECT}digits") if j.kind == KIND]
    assert len(jobs) == 1 and jobs[0].heavy and jobs[0].key == model
    job = jobs[0]

    def ended():
        reconcile(store)
        return not store.get_job(job.id).is_active
    wait_for(ended, timeout=180, interval=0.3, message="the batch-size finder job")
    done = store.get_job(job.id)
    assert done.status == "completed", done.error
    found = done.result
    assert found["mode"].startswith("throughput per batch size")  # no GPU here
    assert all(r["fits"] and r["samples_per_s"] > 0 for r in found["tried"])
    assert found["suggested_batch_size"] in [r["batch_size"] for r in found["tried"]]

    at.run()
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "samples/s" in d.value.columns)
    assert list(table["batch size"]) == [r["batch_size"] for r in found["tried"]]
    at.button(key="train_use_batch").click().run()
    assert_clean(at)
    assert at.session_state["train_batch_size"] == found["suggested_batch_size"]
    assert at.number_input(key="train_batch_size").value == found["suggested_batch_size"]
    store.close()
