"""The run store on both engines: a real temp-file SQLite and a real PostgreSQL server
(``pg_support``: initdb + pg_ctl in a temporary folder, one server per session, one database per
test). Each test that takes ``backend`` runs once per engine."""

from __future__ import annotations

import pytest
from mounts import remount, tmpfs
from store_load import hammer

from core.config import RunConfig
from core.errors import RunNotFound, WorkspaceUnavailable
from core.runs.store import Store
from core.workspace import STORE_ENV


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, home, monkeypatch) -> str:
    """The engine under test, chosen as a user does: ``$LAB2MARKET_STORE`` (none: SQLite)."""
    if request.param == "postgresql":
        monkeypatch.setenv(STORE_ENV, request.getfixturevalue("pg_url"))
    else:
        monkeypatch.delenv(STORE_ENV, raising=False)
    return request.param


def _config(**train) -> dict:
    cfg = RunConfig().to_dict()
    cfg["train"].update(train)
    return cfg


def test_create_get_list_and_update(home, backend):
    store = Store(home)
    run = store.create_run(_config(epochs=3), name="first")
    assert run.status == "queued" and run.total_epochs == 3 and run.dataset == "digits"
    store.update_run(run.id, summary={"a": 1})
    store.update_run(run.id, summary={"b": 2}, epoch=2)
    again = store.get_run(run.id)
    assert again.summary == {"a": 1, "b": 2} and again.epoch == 2
    assert [r.id for r in store.list_runs()] == [run.id]
    assert store.count_runs(search="first") == 1 and store.count_runs(search="nope") == 0
    with pytest.raises(RunNotFound):
        store.get_run("missing")


def test_status_transitions_are_conditional(home, backend):
    store = Store(home)
    run = store.create_run(_config())
    assert store.set_status(run.id, "running")
    assert store.get_run(run.id).started_at is not None
    assert store.set_status(run.id, "completed", expect=("running",))
    # A late reconciliation or cancel cannot overwrite a terminal status.
    assert not store.set_status(run.id, "interrupted", expect=("queued", "running"))
    assert store.get_run(run.id).status == "completed"
    with pytest.raises(ValueError):
        store.set_status(run.id, "bogus")


def test_metrics_roundtrip_and_incremental_reads(home, backend):
    store = Store(home)
    run = store.create_run(_config())
    store.log_metrics(run.id, [(1, "train/loss", 2.0), (2, "train/loss", 1.5),
                               (2, "val/acc", 0.5)])
    assert store.get_metrics(run.id) == {"train/loss": [(1, 2.0), (2, 1.5)],
                                         "val/acc": [(2, 0.5)]}
    assert store.get_metrics(run.id, keys=["val/acc"], after_step=1) == {"val/acc": [(2, 0.5)]}
    assert store.get_metrics(run.id, after_step=2) == {}
    store.log_metrics(run.id, [(2, "val/acc", 0.75)])  # a resumed run rewrites a step
    assert store.get_metrics(run.id, keys=["val/acc"]) == {"val/acc": [(2, 0.75)]}
    assert store.metric_keys(run.id) == ["train/loss", "val/acc"]


def test_events_artifacts_and_delete(home, backend):
    store = Store(home)
    run = store.create_run(_config())
    store.add_event(run.id, "skipped_images", "one bad", level="warning", data={"count": 1})
    store.add_artifact(run.id, "checkpoint", "checkpoints/best.pt")
    events = store.get_events(run.id)
    assert [(e.kind, e.data) for e in events] == [("skipped_images", {"count": 1})]
    assert store.get_artifacts(run.id)[0]["path"] == "checkpoints/best.pt"
    store.delete_run(run.id)
    assert store.count_runs() == 0 and store.get_events(run.id) == []


def test_settings_jobs_claim_and_children(home, backend):
    store = Store(home)
    assert store.dialect == backend
    parent = store.create_run(_config(), kind="cv")
    child = store.create_run(_config(), kind="cv_fold", parent_run=parent.id)
    assert [r.id for r in store.child_runs(parent.id, kind="cv_fold")] == [child.id]
    store.set_setting("max_jobs", "1")
    store.set_setting("max_jobs", "2")  # an upsert, not a second row
    assert store.get_setting("max_jobs") == "2" and store.get_setting("nope", "d") == "d"
    heavy = [store.create_job(child.id, "train", ["-m", "core"], heavy=True) for _ in range(2)]
    light = store.create_job(child.id, "evaluate", ["-m", "core"], key="val")
    assert store.queue_position(heavy[1].id) == 1
    assert store.claim_next_job(1).id == heavy[0].id
    assert store.claim_next_job(1).id == light.id  # light jobs never wait for a slot
    assert store.claim_next_job(1) is None  # the second heavy one waits
    store.update_job(heavy[0].id, done=3, total=9, result={"a": 1})
    assert store.set_job_status(heavy[0].id, "completed", expect=("running",))
    store.update_job(heavy[0].id, done=9)  # late progress is dropped once a job ended
    assert store.get_job(heavy[0].id).done == 3
    assert store.claim_next_job(1).id == heavy[1].id
    assert store.latest_job(child.id, "evaluate", key="val").id == light.id


def test_many_writers_and_polling_readers_lose_nothing(home, backend):
    """4 writer processes and 20 polling readers: no error, no lost metric row, no lost update."""
    outcome = hammer(home, seconds=4.0)
    errors = [r for r in outcome["results"] if r[0] == "error"]
    assert not errors, errors
    store = outcome["setup"]
    written = {run_id: rows for kind, run_id, rows in outcome["results"] if kind == "rows"}
    assert set(written) == set(outcome["run_ids"])
    for run_id, rows in written.items():
        assert rows > 0 and store.count_metrics(run_id) == rows
        assert store.get_run(run_id).summary["writer"] == rows - 10  # the last update won
    if backend == "sqlite":
        assert store._db.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_read_only_workspace_still_reads(tmp_path):
    """`runs` and `status` work on a read-only disk; a write is one line that says why."""
    with tmpfs(tmp_path / "ro") as mnt:
        with Store(mnt) as store:
            run = store.create_run(_config(epochs=2), name="kept")
        remount(mnt, "ro")
        with Store(mnt) as store:
            assert store.read_only and [r.id for r in store.list_runs()] == [run.id]
            with pytest.raises(WorkspaceUnavailable, match="read-only"):
                store.create_run(_config(epochs=2))
