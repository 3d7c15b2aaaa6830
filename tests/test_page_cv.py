"""The Train page on a cross-validation: launched from the form, its folds trained by real
queued jobs, then the summary (mean ± std, the scikit-learn baselines), the folds' curves
overlaid, and the final model launched from the parent (AppTest through the router)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import assert_clean, frame_with, open_page, wait_for

from core import runs
from core.config import RunConfig
from core.runs.cv import fold_runs, sync
from core.runs.records import TERMINAL
from core.runs.store import Store


def traces(at, key: str) -> list[str]:
    """The trace names of the plotly chart keyed ``key``."""
    chart = next(c for c in at.get("plotly_chart") if key in (c.proto.id or ""))
    return [t.get("name") for t in json.loads(chart.proto.spec)["data"]]


def test_cv_from_the_form_to_the_final_model(home: Path) -> None:
    at = open_page("pages/train.py")
    assert at.toggle(key="train_cv").value is False  # off by default, K preset to 5
    assert at.number_input(key="train_cv_k").value == 5
    at.selectbox(key="train_dataset").set_value("wine").run()
    at.number_input(key="train_epochs").set_value(1)
    at.toggle(key="train_cv").set_value(True)
    at.number_input(key="train_cv_k").set_value(3)
    at.button(key="FormSubmitter:train_form-Launch").click().run()
    assert_clean(at)

    store = Store(home)
    parent = store.get_run(at.session_state["active_run"])  # the parent is the active run
    assert parent.kind == "cv" and parent.config["data"]["cv"] == 3
    folds = fold_runs(store, parent.id)
    assert [(f.kind, f.config["data"]["fold"], f.config["train"]["epochs"]) for f in folds] == [
        ("cv_fold", i, 1) for i in range(3)]
    folds_table = frame_with(at, "Best epoch")  # the live view lists the folds
    assert list(folds_table["Run"]) == [f.id for f in folds]

    def ended() -> bool:
        runs.reconcile(store)
        return sync(store, parent.id).status in TERMINAL
    wait_for(ended, timeout=240, interval=0.3, message="the 3 folds")
    assert store.get_run(parent.id).status == "completed"

    at = open_page("pages/train.py", active_run=parent.id)
    summary = frame_with(at, "Mean ± std")
    network = summary[summary["Model"].str.startswith("network")].set_index("Metric")
    assert "±" in network.loc["val/acc", "Mean ± std"]
    assert network.loc["val/acc", ["Fold 0", "Fold 1", "Fold 2"]].notna().all()
    assert {"logistic regression", "gradient boosting"} <= set(summary["Model"])
    assert traces(at, "train_cv_acc_chart") == ["fold 0", "fold 1", "fold 2"]
    assert len(traces(at, "train_cv_loss_chart")) == 3

    # The one training slot is held by a job of this (alive) process, so the final run waits
    # queued and the second click below meets it in flight, however fast a 1-epoch run is.
    holder = store.create_run(RunConfig().to_dict(), name="slot holder")
    store.set_status(holder.id, "running")
    slot = store.create_job(holder.id, "train", ["-c", "pass"], heavy=True)
    assert store.claim_next_job(slots=1).id == slot.id
    store.update_job(slot.id, pid=os.getpid())
    at.button(key="train_cv_final").click().run()
    assert_clean(at)
    final = store.get_run(at.session_state["active_run"])
    assert final.id != parent.id and final.kind == "trained" and final.parent_run == parent.id
    assert final.config["data"]["cv"] is None and final.config["data"]["fold"] is None
    assert final.config["data"]["train_on_val"] is True  # all of train+val, test held out
    assert final.config["train"]["epochs"] == 1 and final.dataset == "wine"
    at = open_page("pages/train.py", active_run=parent.id)  # a second click is refused
    assert store.get_run(final.id).status == "queued"
    assert at.button(key="train_cv_final").disabled
    runs.cancel(store, final.id)  # the test ends here: leave nothing running
    store.set_job_status(slot.id, "completed")
    store.set_status(holder.id, "completed")
