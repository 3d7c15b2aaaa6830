"""One model of background work: the queue, one reconcile, one cancel, compare-and-set statuses.

Real detached processes, real signals, real SQLite; nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, run_json, wait_for

from core import runs
from core.config import RunConfig
from core.errors import InvalidConfig, InvalidRunState
from core.runs import launchers
from core.runs.jobs import thread_env
from core.runs.processes import is_alive
from core.runs.store import Store

# digits, a few epochs: long enough to act on a running job, short enough for CI.
TRAIN = ("train", "--dataset", "digits", "--batch-size", "64", "--seed", "1")


def _heavy_running(store: Store) -> list:
    return [j for j in store.list_jobs(("running",)) if j.heavy]


def test_queue_runs_three_trainings_one_after_another_and_survives_kill_9(home):
    with Store(home) as store:
        runs.set_max_jobs(store, 1)
    # Launched by CLI processes that exit at once: the queue does not need the launcher alive.
    ids = [run_json(*TRAIN, "--epochs", str(epochs), "--detach", home=home)["run_id"]
           for epochs in (200, 3, 3)]
    store = Store(home)
    first, second, third = ids
    job = wait_for(lambda: store.latest_job(first, "train") if store.latest_job(
        first, "train").pid else None, timeout=60, message="first job spawned")
    assert [r.status for r in map(store.get_run, (second, third))] == ["queued", "queued"]
    assert len(_heavy_running(store)) == 1
    assert store.queue_position(store.latest_job(third, "train").id) == 1

    wait_for(lambda: store.get_run(first).epoch >= 1, timeout=120, message="first trains")
    os.killpg(os.getpgid(job.pid), signal.SIGKILL)
    wait_for(lambda: not is_alive(job.pid, job.pid_start), timeout=10, message="killed")

    runs.reconcile(store)  # what the app (or any CLI command) does on its next look
    assert store.get_run(first).status == "interrupted"
    assert store.get_job(job.id).status == "interrupted"
    peak = 0

    def done() -> bool:
        nonlocal peak
        runs.reconcile(store)
        peak = max(peak, len(_heavy_running(store)))
        return all(store.get_run(r).status == "completed" for r in (second, third))

    wait_for(done, timeout=240, interval=0.2, message="second and third complete")
    assert peak == 1  # never two trainings at once
    second_job, third_job = (store.latest_job(r, "train") for r in (second, third))
    assert second_job.ended_at <= third_job.started_at  # one after another, in order
    assert [store.latest_job(r, "train").status for r in (second, third)] == ["completed"] * 2


def test_a_light_job_does_not_wait_behind_training(home):
    store = Store(home)
    runs.set_max_jobs(store, 1)
    busy = runs.launch(store, RunConfig.from_dict({"train": {"epochs": 200}}))
    waiting = runs.launch(store, RunConfig.from_dict({"train": {"epochs": 1}}))
    status = runs.submit(store, waiting.id, "status",
                         ["-m", "core", "status", waiting.id, "--json"])
    assert status.status == "running"  # started at once, the training slot is taken
    done = wait_for(lambda: (j := store.get_job(status.id)).status != "running" and j,
                    timeout=60, message="light job ends")
    assert done.status == "completed" and done.result["run_id"] == waiting.id
    assert store.get_run(waiting.id).status == "queued"
    runs.cancel(store, waiting.id)  # queued: it never starts
    assert store.get_run(waiting.id).status == "cancelled"
    assert store.latest_job(waiting.id, "train").status == "cancelled"
    stopped = runs.cancel(store, busy.id, timeout=30)
    assert stopped.status == "cancelled"
    assert store.latest_job(busy.id, "train").status == "cancelled"


def test_a_job_in_company_gets_one_thread_but_a_waiting_study_driver_is_no_company(
        home, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    store = Store(home)
    run = runs.create_run(store, RunConfig())

    def running(kind: str):  # as the dispatcher leaves a claimed job, before its process
        job = store.create_job(run.id, kind, ["-m", "core", "status", run.id])
        assert store.set_job_status(job.id, "running")
        return store.get_job(job.id)

    trial = running("trial")
    assert thread_env(store, trial) == {}  # alone: every core
    running("tune")  # its study's driver, waiting on it
    assert thread_env(store, trial) == {}
    running("train")  # another training: both would spin on the same two cores
    assert thread_env(store, trial) == {"OMP_NUM_THREADS": "1"}


def test_a_job_that_ignores_sigterm_is_killed_and_says_so(home):
    store = Store(home)
    run = runs.create_run(store, RunConfig())
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    job = runs.submit(store, run.id, "sleeper", ["-c", code])
    wait_for(lambda: store.get_job(job.id).pid, timeout=10, message="spawned")
    time.sleep(0.5)  # let it install its handler
    ended = runs.cancel_job(store, job.id, grace=1.0)
    assert ended.status == "interrupted" and "Killed" in ended.error
    assert not is_alive(ended.pid, ended.pid_start)


def test_a_terminal_status_is_never_overwritten(home):
    store = Store(home)
    run = runs.create_run(store, RunConfig())
    job = store.create_job(run.id, "export", ["-m", "core", "status", run.id])
    assert store.claim_next_job(slots=1).id == job.id
    assert store.set_job_status(job.id, "completed", result={"ok": 1})
    for status in ("failed", "cancelled", "interrupted", "running", "queued"):
        assert not store.set_job_status(job.id, status, expect=("queued", "running"))
    with pytest.raises(InvalidRunState):
        runs.cancel_job(store, job.id)
    store.update_job(job.id, done=5, message="late progress")  # dropped
    runs.reconcile(store)
    after = store.get_job(job.id)
    assert (after.status, after.result, after.done) == ("completed", {"ok": 1}, 0)
    assert store.set_status(run.id, "completed")
    assert not store.set_status(run.id, "interrupted")  # runs too


def test_concurrent_resumes_start_one_job(home):
    store = Store(home)
    run = runs.create_run(store, RunConfig.from_dict({"train": {"epochs": 1}}))
    store.set_status(run.id, "interrupted")
    outcomes: list[str] = []

    def resume() -> None:
        with Store(home) as own:
            try:
                runs.resume(own, run.id)
                outcomes.append("ok")
            except InvalidRunState:
                outcomes.append("refused")

    threads = [threading.Thread(target=resume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "refused", "refused", "refused"]
    assert len(store.list_jobs(run_id=run.id)) == 1
    wait_for(lambda: store.get_run(run.id).status == "completed", timeout=120,
             message="the one resumed job completes")


def test_resume_from_two_processes_at_once(home):
    """The scenario of issue 16: two `resume --detach` of one interrupted run, as processes."""
    store = Store(home)
    run = runs.create_run(store, RunConfig.from_dict({"train": {"epochs": 2}}))
    store.set_status(run.id, "interrupted")
    cmd = [sys.executable, "-m", "core", "resume", run.id, "--detach", "--home", str(home)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    assert codes == [0, 2]
    wait_for(lambda: store.get_run(run.id).status == "completed", timeout=120, message="done")
    assert len(store.list_jobs(run_id=run.id)) == 1


def test_max_jobs_setting_env_and_validation(home, monkeypatch):
    store = Store(home)
    assert runs.max_jobs(store) == (1, "default")
    runs.set_max_jobs(store, 2)
    assert runs.max_jobs(store) == (2, "workspace setting")
    monkeypatch.setenv("LAB2MARKET_MAX_JOBS", "3")
    assert runs.max_jobs(store) == (3, "LAB2MARKET_MAX_JOBS")
    for bad in (0, "x", 65):
        with pytest.raises(InvalidConfig):
            runs.set_max_jobs(store, bad)


def test_lineage_is_recorded_and_checked(home):
    store = Store(home)
    parent = runs.create_run(store, RunConfig())
    child = runs.create_run(store, RunConfig(), kind="distilled", parent_run=parent.id)
    assert (child.kind, child.parent_run) == ("distilled", parent.id)
    assert store.get_run(parent.id).kind == "trained"


def test_a_cancelled_export_ends_cancelled_and_leaves_no_bundle(home):
    run_id = run_json(*TRAIN, "--epochs", "1", home=home)["run_id"]
    store = Store(home)
    job = launchers.start_export(store, run_id, "onnx")
    wait_for(lambda: store.get_job(job.id).pid, timeout=10, message="export spawned")
    ended = runs.cancel_job(store, job.id)
    assert ended.status == "cancelled"
    assert run_json("bundles", run_id, home=home)["bundles"] == []


def test_a_job_keeps_its_result_and_a_failed_one_its_message(home):
    store = Store(home)
    run = runs.create_run(store, RunConfig())
    ok = runs.submit(store, run.id, "status", ["-m", "core", "status", run.id, "--json"])
    bad = runs.submit(store, run.id, "resume", ["-m", "core", "resume", run.id])
    ended = [wait_for(lambda j=j: (x := store.get_job(j.id)).status not in ("queued", "running")
                      and x, timeout=60, interval=0.1) for j in (ok, bad)]
    assert ended[0].status == "completed" and ended[0].result["run_id"] == run.id
    assert ended[1].status == "failed" and "only interrupted or cancelled" in ended[1].error
    assert store.latest_job(run.id, "resume").id == bad.id


def test_delete_is_refused_while_work_runs_on_the_run(home):
    store = Store(home)
    run = runs.create_run(store, RunConfig())
    store.set_status(run.id, "running")
    store.set_status(run.id, "completed")
    job = runs.submit(store, run.id, "export", ["-c", "import time; time.sleep(60)"])
    wait_for(lambda: store.get_job(job.id).pid, timeout=10, message="spawned")
    with pytest.raises(InvalidRunState, match="work in progress"):
        runs.delete(store, run.id)
    assert (home / "runs" / run.id).is_dir() and store.get_run(run.id)
    runs.cancel_job(store, job.id, grace=5)
    runs.delete(store, run.id)
    assert not (home / "runs" / run.id).exists()


def test_a_jobs_end_rings_whoever_waits_on_its_run_and_on_its_parent(home):
    from core.runs.waiting import bell, child_ended, ended, wait_until

    with Store(home) as store:
        parent = runs.create_run(store, RunConfig.from_dict({"train": {"epochs": 1}}))
        child = runs.create_run(store, RunConfig.from_dict({"train": {"epochs": 1}}),
                                parent_run=parent.id)
        with bell(store, ended(child.id)) as on_run, bell(store, child_ended(parent.id)) as \
                on_parent, bell(store, ended(child.id)) as second:
            assert on_run is not None and on_parent is not None
            assert second is None  # one listener a bell: a second waiter polls instead
            job = runs.submit(store, child.id, "status",
                              ["-m", "core", "status", child.id, "--json"])

            def ended_now() -> bool:
                return store.get_job(job.id).status == "completed"
            # A 60 s tick: only the job's ring can wake these waiters before a minute is out.
            started = time.monotonic()
            assert wait_until(ended_now, timeout=60, tick=60, bell=on_run)
            assert wait_until(ended_now, timeout=60, tick=60, bell=on_parent)
            assert time.monotonic() - started < 30
