"""Knowledge distillation: the loss, a tabular student, and a smallcnn student of a resnet18
teacher (another input size) that trains as a real job, survives kill -9, resumes and is
evaluated."""

from __future__ import annotations

import os
import signal

import pytest
import torch
import torch.nn.functional as F
from compress_support import config, mini_shapes, train_now
from conftest import wait_for

from core.compress import distilled_config, launch_distill
from core.config import RunConfig
from core.errors import InvalidConfig
from core.runs import reconcile, resume
from core.train.distill import distillation_loss
from core.workspace import Workspace


def test_the_loss_blends_the_teachers_soft_targets_and_the_labels():
    student, teacher = torch.randn(8, 5), torch.randn(8, 5)
    labels = torch.randint(0, 5, (8,))
    ce = F.cross_entropy(student, labels)
    assert torch.allclose(distillation_loss(student, teacher, labels, 4.0, 0.0), ce)
    # Agreeing with the teacher costs nothing but the label term.
    assert torch.allclose(distillation_loss(teacher, teacher, labels, 4.0, 1.0),
                          torch.tensor(0.0), atol=1e-6)
    t = 3.0
    kl = F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1),
                  reduction="batchmean")
    blended = distillation_loss(student, teacher, labels, t, 0.7)
    assert torch.allclose(blended, 0.7 * t * t * kl + 0.3 * ce, atol=1e-6)


def test_a_tabular_student_learns_from_its_teacher(ws: Workspace):
    raw = RunConfig().to_dict()
    raw["data"]["dataset"] = "wine"
    raw["model"]["name"] = "mlp"
    raw["train"].update(epochs=2, batch_size=32)
    teacher = train_now(ws, RunConfig.from_dict(raw))
    student = distilled_config(ws.store, teacher, RunConfig.from_dict(raw), alpha=0.5)
    run = ws.store.get_run(train_now(ws, student, kind="distilled", parent=teacher))
    assert (run.status, run.parent_run) == ("completed", teacher)
    assert run.config["distill"] == {"teacher": teacher, "temperature": 4.0, "alpha": 0.5}
    with pytest.raises(InvalidConfig, match="teacher's dataset"):
        other = RunConfig.from_dict({**raw, "data": {"dataset": "iris"}})
        distilled_config(ws.store, teacher, other)


def test_a_distilled_smallcnn_resumes_after_kill_9_and_is_evaluated(
        ws: Workspace, tmp_path, monkeypatch):
    from core.analyze.evaluate import evaluate

    mini_shapes(ws, tmp_path / "mini")
    teacher = train_now(ws, config("resnet18", image_size=32))
    # The student sees 16 px images, the teacher its own 32 px ones.
    student = config("smallcnn", epochs=3, image_size=16)
    marker = tmp_path / "paused"
    monkeypatch.setenv("LAB2MARKET_PAUSE_AT", "saved:last.pt#1")
    monkeypatch.setenv("LAB2MARKET_PAUSE_MARKER", str(marker))
    run = launch_distill(ws.store, teacher, student)  # a real job process
    monkeypatch.delenv("LAB2MARKET_PAUSE_AT")
    wait_for(marker.exists, timeout=240, message="the job to checkpoint its first epoch")
    job = ws.store.active_jobs(run.id)[0]
    assert job.kind == "distill"
    os.killpg(os.getpgid(job.pid), signal.SIGKILL)
    wait_for(lambda: reconcile(ws.store) or ws.store.get_run(run.id).status == "interrupted",
             timeout=30, message="the run to be marked interrupted")
    assert (ws.run_dir(run.id) / "checkpoints" / "last.pt").is_file()  # epoch 1's

    resume(ws.store, run.id)
    done = wait_for(lambda: (r := ws.store.get_run(run.id)).status not in ("queued", "running")
                    and r, timeout=240, message="the resumed run to end")
    assert (done.status, done.epoch) == ("completed", 3), done.error
    preds = evaluate(ws, run.id, "test")
    assert len(preds) > 0 and preds.probs.shape[1] == 4
