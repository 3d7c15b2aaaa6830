"""The Data page's Health tab (AppTest through the router): the check runs as a real background
job that the tab watches, the stored report is drawn, and a fix makes a new dataset version."""

from __future__ import annotations

from pathlib import Path

from conftest import assert_clean, open_page, wait_for

from core.data import list_datasets
from core.data.health import stored_report
from core.runs import reconcile
from core.runs.jobs import DATASET_SUBJECT
from core.runs.store import Store
from core.workspace import Workspace


def test_the_health_tab_checks_in_the_background_and_fixes_as_a_new_version(home: Path):
    at = open_page("pages/data.py", data_dataset="iris")
    assert any(b.key == "data_health_check" for b in at.button)  # not checked yet

    at.button(key="data_health_check").click().run()
    assert_clean(at)
    store = Store(home)
    job = store.latest_job(f"{DATASET_SUBJECT}iris", "health", "")
    assert job is not None and job.kind == "health"

    def ended():
        reconcile(store)
        return not store.get_job(job.id).is_active
    wait_for(ended, timeout=120, interval=0.3, message="the health job")
    assert store.get_job(job.id).status == "completed"

    at.run()
    assert_clean(at)
    assert "1 duplicate row(s) within a split" in [e.label for e in at.expander]
    assert not any(b.key == "data_health_check" for b in at.button)

    at.button(key="data_health_fix_0").click().run()  # "Keep one of each", default name
    assert_clean(at)
    with Workspace.open(home) as ws:
        assert "iris-v2" in {i.name for i in list_datasets(ws)}
        assert stored_report(ws, "iris") is not None  # the original keeps its report
    assert at.session_state["data_dataset"] == "iris-v2"  # the new version is selected
    store.close()
