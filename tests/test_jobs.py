"""Background jobs as real processes: kill -9 and resume, cancel, concurrency, DDP."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import run_cli, run_json, wait_for

from core import runs
from core.runs.processes import is_alive
from core.runs.store import TERMINAL, Store

# shapes at 32px: epochs long enough (~1 s) to act between them, short enough for CI.
SHAPES = ("--dataset", "shapes", "--model", "smallcnn", "--image-size", "32",
          "--batch-size", "32", "--seed", "3")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run trained straight through, to compare interrupted ones against."""
    home = tmp_path_factory.mktemp("reference")
    return run_json("train", *SHAPES, "--epochs", "4", home=home)


def _detached(home, *extra: str) -> str:
    return run_json("train", *SHAPES, *extra, "--detach", home=home)["run_id"]


def _live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies awaiting a reaper do not count)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            live.append(int(stat.parent.name))
    return live


def _gone(pid: int) -> bool:
    return not is_alive(pid)


def test_kill_9_then_resume_equals_a_straight_run(home, reference):
    run_id = _detached(home, "--epochs", "4")
    store = Store(home)
    wait_for(lambda: store.get_run(run_id).epoch >= 2, timeout=120, message="epoch 2")
    pid = store.get_run(run_id).pid
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_for(lambda: _gone(pid), timeout=10, message="process gone")
    assert run_json("status", run_id, home=home)["status"] == "interrupted"
    resumed = run_json("resume", run_id, home=home)
    assert resumed["status"] == "completed" and resumed["epochs_run"] == 4
    assert resumed["run_id"] == run_id
    assert resumed["final"] == reference["final"]
    # One row per (step, key): the resumed epochs replaced nothing twice.
    epochs = store.get_metrics(run_id, keys=["epoch"])["epoch"]
    assert [v for _, v in epochs] == [1.0, 2.0, 3.0, 4.0]


def test_cancel_checkpoints_and_leaves_no_process_then_resume_is_exact(home, reference):
    run_id = _detached(home, "--epochs", "4")
    store = Store(home)
    wait_for(lambda: store.get_run(run_id).step >= 3 and store.get_run(run_id).epoch < 4,
             timeout=120, message="training started")
    pid = store.get_run(run_id).pid
    t0 = time.monotonic()
    out = run_json("cancel", run_id, home=home)
    assert out["status"] == "cancelled"
    assert time.monotonic() - t0 < 30
    assert (home / "runs" / run_id / "checkpoints" / "last.pt").is_file()
    assert _live_group_members(pid) == []  # the job's whole process group is gone
    resumed = run_json("resume", run_id, home=home)
    assert resumed["status"] == "completed"
    for key, value in reference["final"].items():
        assert resumed["final"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_two_jobs_and_a_polling_reader_lose_nothing(home):
    ids = [run_json("train", "--dataset", "digits", "--epochs", "4", "--seed", str(s),
                    "--detach", home=home)["run_id"] for s in (1, 2)]
    store = Store(home)
    polls = 0

    def both_done() -> bool:
        nonlocal polls
        polls += 1
        for run_id in ids:
            store.get_metrics(run_id)
        runs.reconcile(store)
        return all(store.get_run(r).status in TERMINAL for r in ids)

    wait_for(both_done, timeout=180, interval=0.2, message="both runs finish")
    assert polls > 3
    for run_id in ids:
        run = store.get_run(run_id)
        assert run.status == "completed", run.error
        series = store.get_metrics(run_id)
        for key in ("train/loss", "val/loss", "val/acc", "lr", "throughput", "epoch"):
            assert len(series[key]) == 4, key
        log = (home / "runs" / run_id / "log.txt").read_text()
        assert "locked" not in log


def test_ddp_two_processes_record_one_set_of_metrics(home):
    out = run_json("train", "--dataset", "digits", "--epochs", "2", "--nproc", "2",
                   home=home, timeout=240)
    assert out["status"] == "completed", out
    run = Store(home).get_run(out["run_id"])
    assert run.summary["world_size"] == 2
    assert len(Store(home).get_metrics(run.id, keys=["val/acc"])["val/acc"]) == 2
    assert out["final"]["val/acc"] > 0.8


def test_failed_run_keeps_its_error(home, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-cache"))
    proc = run_cli("train", "--dataset", "digits", "--model", "resnet18", "--pretrained",
                   "--epochs", "1", "--json", home=home, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "failed"
    assert "weights" in out["error"].lower()
    log = (home / "runs" / out["run_id"] / "log.txt").read_text()
    assert "Traceback" in log
