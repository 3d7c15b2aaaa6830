"""Damaged checkpoints (issue 16, item 3): every way a checkpoint file can be broken ends in one
line that names the file and says what to do, never a traceback, a wrong answer or a dead run.

One tiny run is trained per module; each test damages a copy of its files (real files, real
``torch.save``), then loads it the way the product does (``load_checkpoint``, ``load_run``,
``evaluate``, a resume through ``execute_run``, the CLI).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_cli, train_run

from core.analyze.evaluate import evaluate
from core.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from core.checkpoint.files import _write_checksums
from core.errors import CheckpointDamaged, UnsafeCheckpoint, UserError
from core.models.loaded import load_run
from core.train import execute_run
from core.train.callbacks import Callback
from core.workspace import Workspace


@pytest.fixture(scope="module")
def trained(ws: Workspace) -> str:
    """A completed one-epoch digits run; tests work on copies of its checkpoints."""
    return train_run(ws)


@pytest.fixture
def run_copy(ws: Workspace, trained: str, tmp_path: Path) -> Path:
    """``<tmp>/runs/<id>/checkpoints/`` holding copies of the run's files (and checksums)."""
    folder = tmp_path / "runs" / trained / "checkpoints"
    shutil.copytree(ws.home / "runs" / trained / "checkpoints", folder)
    return folder


@pytest.fixture
def fresh(workspace: Workspace) -> str:
    """A completed run in a workspace of its own, for tests that damage the real files."""
    return train_run(workspace)


def _one_line_damaged(exc: pytest.ExceptionInfo, where: str) -> str:
    message = str(exc.value)
    assert "\n" not in message and isinstance(exc.value, UserError)
    assert message.startswith(f"checkpoint {where} is damaged: "), message
    assert "contains Python objects" not in message
    return message


# -- the file itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("checksum", [True, False], ids=["with-checksum", "old-no-checksum"])
@pytest.mark.parametrize("damage, reason_old", [
    ("random", "unreadable bytes"),
    ("text", "a text file"),
    ("empty", "the file is empty"),
    ("truncated", "truncated"),
])
def test_damaged_bytes_are_one_line(run_copy, trained, damage, reason_old, checksum):
    best = run_copy / "best.pt"
    data = best.read_bytes()
    best.write_bytes({"random": os.urandom(len(data)),
                      "text": b"model weights, see attached\nepoch 3\n",
                      "empty": b"",
                      "truncated": data[: len(data) // 2]}[damage])
    if not checksum:
        (run_copy / "best.pt.sha256").unlink()
    with pytest.raises(CheckpointDamaged) as exc:
        load_checkpoint(best, expect_checksum=True)
    message = _one_line_damaged(exc, f"runs/{trained}/checkpoints/best.pt")
    # With a checksum, any change is caught before a byte is unpickled.
    expected = "changed after it was written" if checksum else reason_old
    assert expected in message
    assert message.endswith("delete it (and best.pt.sha256) to fall back to last.pt, or "
                            "retrain the run")


@pytest.mark.parametrize("fill", ["zeros", "nan"])
def test_weights_changed_in_place_are_caught_by_the_checksum(run_copy, fill):
    last = run_copy / "last.pt"
    state = torch.load(last, weights_only=True)
    for tensor in state["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(0.0 if fill == "zeros" else float("nan"))
    torch.save(state, last)  # a valid file, the same keys and shapes: only the checksum knows
    with pytest.raises(CheckpointDamaged, match="sha256 does not match last.pt.sha256"):
        load_checkpoint(last)


def test_an_old_checkpoint_without_checksum_loads_with_a_warning(run_copy, caplog):
    (run_copy / "last.pt.sha256").unlink()
    with caplog.at_level(logging.WARNING, logger="core.checkpoint"):
        state = load_checkpoint(run_copy / "last.pt", expect_checksum=True)
    assert state["format"] == FORMAT
    assert "no checksum file" in caplog.text


def test_a_malformed_checksum_file_is_refused_with_the_way_out(run_copy):
    (run_copy / "last.pt.sha256").write_text("not a digest\n")
    with pytest.raises(CheckpointDamaged, match="delete that file to load the checkpoint "
                                                "unchecked"):
        load_checkpoint(run_copy / "last.pt")


def test_a_pickle_with_code_is_still_refused_as_unsafe(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(UnsafeCheckpoint) as exc:
        load_checkpoint(path)
    assert "\n" not in str(exc.value) and "GLOBAL" in str(exc.value)


def test_a_kill_between_the_two_checksum_phases_still_verifies(tmp_path):
    """The checksum file lists the new digest and the old one while the file is swapped."""
    path = tmp_path / "last.pt"
    old = save_checkpoint({"epoch": 1}, path)
    new = save_checkpoint({"epoch": 2}, tmp_path / "other.pt")
    _write_checksums(path, [new, old])  # phase 1 done, file not yet replaced
    assert load_checkpoint(path)["epoch"] == 1
    os.replace(tmp_path / "other.pt", path)  # replaced, phase 2 not done
    assert load_checkpoint(path)["epoch"] == 2
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointDamaged):
        load_checkpoint(path)


# -- loading a run: load_run, evaluate, the CLI ---------------------------------------------------


def _resave(path: Path, edit) -> None:
    """Rewrite a checkpoint *with* a valid checksum (as a buggy writer would)."""
    state = load_checkpoint(path)
    edit(state["model"])
    save_checkpoint(state, path)


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m.pop(next(iter(m))), "missing keys"),
    (lambda m: m.update(extra=torch.zeros(1)), "unexpected keys extra"),
    (lambda m: m.update({k: torch.zeros(3, 3) for k in list(m)[:1]}), "wrong shapes for"),
])
def test_a_state_dict_that_does_not_fit_is_one_line(home, fresh, edit, expected,
                                                    workspace: Workspace):
    _resave(home / "runs" / fresh / "checkpoints" / "best.pt", edit)
    with pytest.raises(CheckpointDamaged) as exc:
        load_run(workspace, fresh)
    message = _one_line_damaged(exc, f"runs/{fresh}/checkpoints/best.pt")
    assert f"it does not fit the model ({expected}" in message


def test_nan_weights_in_an_old_checkpoint_give_one_line_at_evaluate(home, fresh,
                                                                    workspace: Workspace):
    """No checksum to catch it (an old file): evaluate refuses NaN outputs, not scikit-learn."""
    best = home / "runs" / fresh / "checkpoints" / "best.pt"
    state = load_checkpoint(best)
    for tensor in state["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    torch.save(state, best)
    (home / "runs" / fresh / "checkpoints" / "best.pt.sha256").unlink()
    with pytest.raises(CheckpointDamaged) as exc:
        evaluate(workspace, fresh, split="val", force=True)
    assert "gives non-finite outputs (NaN or inf)" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not (home / "runs" / fresh / "eval" / "val.npz").exists()  # nothing stored


def test_cli_evaluate_of_zeroed_weights_exits_2_with_one_line(home, fresh):
    best = home / "runs" / fresh / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    for tensor in state["model"].values():
        tensor.zero_()
    torch.save(state, best)
    proc = run_cli("evaluate", fresh, "--split", "val", home=home, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"checkpoint runs/{fresh}/checkpoints/best.pt is damaged" in proc.stderr


# -- resume: a damaged checkpoint leaves the run resumable ----------------------------------------


class _CancelAfterFirstEpoch(Callback):
    def on_checkpoint(self, trainer, epoch):
        trainer.request_stop()  # as SIGTERM does: the next batch checkpoints and stops


def test_a_resume_that_cannot_start_leaves_the_run_interrupted(home, workspace: Workspace):
    from core.config import RunConfig
    from core.runs import create_run

    raw = RunConfig().to_dict()
    raw["train"].update(epochs=2)
    store = workspace.store
    run = create_run(store, RunConfig.from_dict(raw))
    first = execute_run(workspace, run.id, callbacks=[_CancelAfterFirstEpoch()])
    assert first["status"] == "cancelled"
    last = home / "runs" / run.id / "checkpoints" / "last.pt"
    good = last.read_bytes()
    last.write_bytes(os.urandom(len(good)))

    assert store.set_status(run.id, "queued", expect=("cancelled",))  # as `resume` does
    summary = execute_run(workspace, run.id, resume=True)
    assert summary["status"] == "interrupted"
    stored = store.get_run(run.id)
    assert stored.status == "interrupted"  # never "failed": it can be resumed again
    assert stored.error.startswith(f"checkpoint runs/{run.id}/checkpoints/last.pt is damaged: ")
    assert "\n" not in stored.error

    last.write_bytes(good)  # the user restores the file (from a backup), then resumes again
    assert store.set_status(run.id, "queued", expect=("interrupted",))
    summary = execute_run(workspace, run.id, resume=True)
    assert summary["status"] == "completed" and summary["epochs_run"] == 2
