"""Background tasks: a real detached CLI process reporting through the store."""

from __future__ import annotations

from conftest import wait_for

from core.config import RunConfig
from core.runs.jobs import create_run
from core.runs.store import Store
from core.runs.tasks import launch_task, reconcile_tasks


def test_task_completes_with_its_result_and_failures_keep_the_message(home):
    store = Store(home)
    run = create_run(store, RunConfig())
    task = launch_task(store, run.id, "status", ["status", run.id, "--json"])
    assert task.pid
    done = wait_for(lambda: (t := store.get_task(task.id)).status in ("completed", "failed")
                    and t, timeout=60, interval=0.1)
    assert done.status == "completed" and done.result["run_id"] == run.id

    bad = launch_task(store, run.id, "resume", ["resume", run.id])
    failed = wait_for(lambda: (t := store.get_task(bad.id)).status in ("completed", "failed")
                      and t, timeout=60, interval=0.1)
    assert failed.status == "failed" and "only interrupted or cancelled" in failed.error
    assert store.latest_task(run.id, "resume").id == bad.id
    reconcile_tasks(store)  # finished tasks are left alone
    assert store.get_task(task.id).status == "completed"
