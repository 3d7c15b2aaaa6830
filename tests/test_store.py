"""The run store against a real temp-file SQLite."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from mounts import remount, tmpfs

from core.config import RunConfig
from core.errors import RunNotFound, WorkspaceUnavailable
from core.runs.store import Store


def _config(**train) -> dict:
    cfg = RunConfig().to_dict()
    cfg["train"].update(train)
    return cfg


def test_create_get_list_and_update(home):
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


def test_status_transitions_are_conditional(home):
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


def test_metrics_roundtrip_and_incremental_reads(home):
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


def test_events_artifacts_and_delete(home):
    store = Store(home)
    run = store.create_run(_config())
    store.add_event(run.id, "skipped_images", "one bad", level="warning", data={"count": 1})
    store.add_artifact(run.id, "checkpoint", "checkpoints/best.pt")
    events = store.get_events(run.id)
    assert [(e.kind, e.data) for e in events] == [("skipped_images", {"count": 1})]
    assert store.get_artifacts(run.id)[0]["path"] == "checkpoints/best.pt"
    store.delete_run(run.id)
    assert store.count_runs() == 0 and store.get_events(run.id) == []


def test_wal_mode_and_concurrent_writers_with_a_polling_reader(home):
    """Two writers (own connections) and a polling reader: nothing locked, nothing lost."""
    setup = Store(home)
    runs = [setup.create_run(_config()).id for _ in range(2)]
    assert setup._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    errors: list[BaseException] = []
    done = threading.Event()

    def write(run_id: str) -> None:
        store = Store(home)
        try:
            for step in range(200):
                store.log_metrics(run_id, [(step, "train/loss", step * 0.1),
                                           (step, "val/acc", 0.5)])
                store.update_run(run_id, step=step, heartbeat=time.time())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def read() -> None:
        store = Store(home)
        try:
            while not done.is_set():
                for run_id in runs:
                    store.get_metrics(run_id)
                    store.get_run(run_id)
                time.sleep(0.01)
        except sqlite3.OperationalError as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(r,)) for r in runs]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=60)
    done.set()
    reader.join(timeout=10)
    assert not errors, errors
    for run_id in runs:
        assert setup.count_metrics(run_id) == 400


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
