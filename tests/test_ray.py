"""The Ray executor against a real local cluster (``ray start --head --num-cpus 2`` in a
temporary folder, bound to 127.0.0.1, its processes stopped at the end) and a real PostgreSQL
store: a job per Ray job, the queue, cancel, a killed worker, resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, free_port, open_page, run_cli, run_json, wait_for
from ray_support import processes_under, ray_head

from core.config import RunConfig
from core.runs import reconcile
from core.runs.executors.ray import RayExecutor, ray_address, resource_request, submission_id
from core.runs.store import TERMINAL, Store
from core.workspace import STORE_ENV

DIGITS = ("--dataset", "digits", "--batch-size", "32", "--seed", "1")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A one-node Ray cluster for the module; its dashboard address (the Jobs API)."""
    with ray_head() as address:
        yield address


@pytest.fixture
def cluster_home(home, pg_url, ray_cluster, monkeypatch) -> Path:
    """A workspace with a PostgreSQL store whose jobs run on the Ray cluster, one at a time."""
    monkeypatch.setenv(STORE_ENV, pg_url)
    run_json("executor", "ray", "--ray-address", ray_cluster, home=home)
    run_json("queue", "--max-jobs", "1", home=home)
    return home


def _ended(store: Store, run_id: str):
    run = store.get_run(run_id)
    return run if run.status in TERMINAL else None


def test_sqlite_with_ray_is_refused_in_one_line(home, monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)
    proc = run_cli("train", *DIGITS, "--epochs", "1", "--executor", "ray", home=home,
                   check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --executor ray needs a PostgreSQL run store")


def test_the_resource_request_follows_the_run_config():
    cfg = RunConfig().to_dict()
    assert resource_request(cfg, cluster_has_gpus=False) == {
        "num_cpus": 1.0, "num_gpus": 0.0, "memory": 2 * 2**30}
    # DDP over 4 GPUs, 2 loader workers each, 24 GB: one Ray job, so the GPUs are on one node.
    cfg["train"].update(nproc=4, device="cuda", memory_gb=24)
    cfg["data"]["num_workers"] = 2
    assert resource_request(cfg, cluster_has_gpus=False) == {
        "num_cpus": 12.0, "num_gpus": 4.0, "memory": 24 * 2**30}
    cfg["train"].update(device="auto", memory_gb=None)
    assert resource_request(cfg, cluster_has_gpus=True)["num_gpus"] == 4.0
    assert resource_request(cfg, cluster_has_gpus=False)["num_gpus"] == 0.0
    assert resource_request(cfg, True)["memory"] == 4 * 2 * 2**30  # 2 GB a process
    # A job with no run config (about a dataset): one CPU, no GPU, the default memory.
    assert resource_request(None, cluster_has_gpus=True) == {
        "num_cpus": 1.0, "num_gpus": 0.0, "memory": 2 * 2**30}


def test_jobs_run_on_ray_queue_cancel_kill_and_resume(cluster_home):
    home = cluster_home
    store = Store(home)
    first = run_json("train", *DIGITS, "--epochs", "1", "--detach", home=home)["run_id"]
    second = run_json("train", *DIGITS, "--epochs", "30", "--detach", home=home)["run_id"]
    job1, job2 = store.latest_job(first, "train"), store.latest_job(second, "train")
    assert job1.executor == "ray" and job1.status == "running"
    assert job2.status == "queued"  # one slot: the second waits for the first
    ray = RayExecutor()
    assert ray.status(store, job1) in ("PENDING", "RUNNING", "SUCCEEDED")
    from ray.util.state import list_actors

    # The request built from the run's config reached Ray: its job supervisor reserves it.
    supervisor = list_actors(address=ray_address(store), detail=True, filters=[
        ("name", "=", f"_ray_internal_job_actor_{submission_id(job1)}")])
    assert supervisor[0].required_resources == {"CPU": 1.0, "memory": 2.0 * 2**30}
    run = wait_for(lambda: _ended(store, first), timeout=300, interval=0.5)
    assert run.status == "completed", run.error
    assert len(store.get_metrics(first)["val/acc"]) == 1  # its curves, in PostgreSQL
    # ... and on the Train page, which reads the same PostgreSQL store ($LAB2MARKET_STORE).
    losses = store.get_metrics(first, keys=("train/step_loss", "train/loss", "val/loss"))
    at = open_page("pages/train.py", active_run=first)
    assert f"Loss curve: {sum(map(len, losses.values()))} points" in [c.value for c in at.caption]

    # The second starts when the first ends; cancel it through Ray once it trains.
    wait_for(lambda: store.count_metrics(second) > 0, timeout=300, interval=0.5)
    job2 = store.latest_job(second, "train")
    assert run_json("cancel", second, home=home)["status"] in ("cancelled", "interrupted")
    assert store.get_job(job2.id).status == "cancelled"

    # A worker killed under Ray: reconcile makes it interrupted; resume completes it.
    # Long enough that it is still training when the kill lands (3 epochs of digits could end
    # between its first metric and the kill, and the run rightly completed).
    third = run_json("train", *DIGITS, "--epochs", "20", "--detach", home=home)["run_id"]
    wait_for(lambda: store.count_metrics(third) > 0, timeout=300, interval=0.5)
    job3 = store.latest_job(third, "train")
    pids = processes_under(job3.id)  # the job's python process, on the Ray node
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: ray.is_alive(store, job3) is False, timeout=60, interval=0.5)
    reconcile(store)
    assert store.get_job(job3.id).status == "interrupted"
    assert store.get_run(third).status == "interrupted"
    run_json("resume", third, "--detach", home=home)
    run = wait_for(lambda: _ended(store, third), timeout=300, interval=0.5)
    assert run.status == "completed", run.error
    assert len(store.get_metrics(third)["val/acc"]) == 20


@pytest.mark.slow
def test_the_one_machine_team_script(tmp_path):
    """README's team set-up on one machine: PostgreSQL and a Ray head started by the script, a
    digits epoch trained through Ray into PostgreSQL, and everything it started stopped."""
    folder = tempfile.mkdtemp(prefix="l2m-team-")
    env = {**os.environ, "PG_PORT": str(free_port()), "RAY_PORT": str(free_port()),
           "RAY_DASHBOARD_PORT": str(free_port()), "RAY_AGENT_PORT": str(free_port()),
           "RAY_CLIENT_PORT": str(free_port())}  # the module's own cluster holds the defaults
    env.pop(STORE_ENV, None)
    try:
        done = subprocess.run([str(ROOT / "scripts" / "team_one_machine.sh"), folder, "--check"],
                              capture_output=True, text=True, timeout=600, env=env,
                              start_new_session=True)  # Ray's daemons never signal pytest
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert '"status": "completed"' in done.stdout and "postgresql store" in done.stdout
        assert processes_under(folder) == []
    finally:
        subprocess.run([str(ROOT / "scripts" / "team_one_machine.sh"), folder, "--stop"],
                       capture_output=True, timeout=120, env=env, start_new_session=True)
        shutil.rmtree(folder, ignore_errors=True)
