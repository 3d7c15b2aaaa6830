"""Training faults (issue 16, items 4 and 5): a SIGKILL at the worst moment of a checkpoint write,
and a full or read-only disk under a run. Each ends in a true status, loses no epoch and leaves a
run that resumes to the end.

Real processes and signals: the job is a detached ``python -m core _job`` that a test-only hook
(``LAB2MARKET_PAUSE_AT``) holds at an exact point of the checkpoint write, to be SIGKILLed there.
A real small filesystem: a tmpfs mounted by the test (root only, else skipped) under the runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import run_json, wait_for
from mounts import tmpfs

from core.checkpoint import load_checkpoint
from core.config import RunConfig
from core.runs import create_run
from core.runs.store import Store
from core.train import execute_run
from core.train.callbacks import Callback
from core.workspace import Workspace

EPOCHS = 3
DIGITS = ("--dataset", "digits", "--epochs", str(EPOCHS), "--batch-size", "64", "--seed", "1")


def _epochs_logged(store: Store, run_id: str) -> list[float]:
    return [v for _, v in store.get_metrics(run_id, keys=["epoch"]).get("epoch", [])]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


# -- SIGKILL inside a checkpoint write ----------------------------------------------------------


@pytest.mark.parametrize("point", [
    "saved:last.pt#2",  # last.pt of epoch 2 in place; its metrics were once written only after
    "copy:best.pt#2",  # temp files of epoch 2 written, nothing in place yet
])
def test_sigkill_during_a_checkpoint_write_loses_no_epoch(home, tmp_path, monkeypatch, point,
                                                          workspace: Workspace):
    marker = tmp_path / "paused"
    monkeypatch.setenv("LAB2MARKET_PAUSE_AT", point)
    monkeypatch.setenv("LAB2MARKET_PAUSE_MARKER", str(marker))
    # val/acc, not val/loss: it must improve at epoch 2 so that best.pt is written then.
    run_id = run_json("train", *DIGITS, "--monitor", "val/acc", "--mode", "max", "--detach",
                      home=home)["run_id"]
    monkeypatch.delenv("LAB2MARKET_PAUSE_AT")
    wait_for(marker.exists, timeout=120, message=f"the job to pause at {point}")
    store = workspace.store
    pid = store.get_run(run_id).pid
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_for(lambda: _gone(pid), timeout=10, message="the job to die")

    # Epoch 2's metrics are in the store before any of its checkpoint files is in place.
    assert _epochs_logged(store, run_id) == [1.0, 2.0]
    folder = home / "runs" / run_id / "checkpoints"
    leftovers = sorted(p.name for p in folder.glob(".*.tmp"))
    assert bool(leftovers) == point.startswith("copy:"), leftovers
    assert run_json("status", run_id, home=home)["status"] == "interrupted"

    resumed = run_json("resume", run_id, home=home, timeout=240)
    assert resumed["status"] == "completed" and resumed["epochs_run"] == EPOCHS
    # Every epoch's val metrics exactly once (one row per step), and no temp file left.
    assert _epochs_logged(store, run_id) == [1.0, 2.0, 3.0]
    series = store.get_metrics(run_id, keys=["val/acc", "val/loss"])
    for key in ("val/acc", "val/loss"):
        steps = [s for s, _ in series[key]]
        assert len(steps) == EPOCHS == len(set(steps)), (key, steps)
    assert list(folder.glob(".*.tmp")) == []
    for name in ("last.pt", "best.pt"):  # both verify against their checksums
        assert load_checkpoint(folder / name, expect_checksum=True)["format"]


# -- a full or read-only disk -------------------------------------------------------------------


@pytest.fixture
def small_disk(home: Path):
    """A 16 MiB tmpfs mounted on ``<home>/runs`` (the store stays on the real disk)."""
    with tmpfs(home / "runs", "size=16m") as runs:
        yield runs


class _DiskTrouble(Callback):
    """After epoch 1 is checkpointed, fill the disk (or make the checkpoints folder a read-only
    bind mount: the run's open log file keeps the tmpfs itself from being remounted)."""

    def __init__(self, disk: Path, kind: str):
        self.disk, self.kind = disk, kind

    def on_checkpoint(self, trainer, epoch):
        if epoch != 0:
            return
        if self.kind == "read-only":
            folder = str(trainer.run_dir / "checkpoints")
            subprocess.run(["mount", "--bind", folder, folder], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True)
            return
        chunk = b"\0" * (1 << 16)
        with open(self.disk / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(chunk)
                    fh.flush()
            except OSError:
                pass


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_a_full_or_read_only_disk_interrupts_the_run_resumably(workspace: Workspace, small_disk,
                                                               kind):
    raw = RunConfig().to_dict()
    raw["train"].update(epochs=EPOCHS, batch_size=64)
    store = workspace.store
    run = create_run(store, RunConfig.from_dict(raw))
    summary = execute_run(workspace, run.id, callbacks=[_DiskTrouble(small_disk, kind)])

    assert summary["status"] == "interrupted", summary
    stored = store.get_run(run.id)
    assert stored.status == "interrupted" and "\n" not in stored.error
    what = "disk is full" if kind == "full" else "is read-only"
    assert stored.error.startswith(f"the workspace {what}: "), stored.error
    assert "and resume the run" in stored.error
    folder = small_disk / run.id / "checkpoints"
    assert load_checkpoint(folder / "last.pt", expect_checksum=True)["epoch"] == 1  # intact
    assert list(folder.glob(".*.tmp")) == []

    # Free the space (or make it writable again), then resume to the end.
    if kind == "read-only":
        subprocess.run(["umount", str(folder)], check=True)
    (small_disk / "filler").unlink(missing_ok=True)
    assert store.set_status(run.id, "queued", expect=("interrupted",))  # as `resume` does
    resumed = execute_run(workspace, run.id, resume=True)
    assert resumed["status"] == "completed" and resumed["epochs_run"] == EPOCHS
    assert _epochs_logged(store, run.id) == [1.0, 2.0, 3.0]
