"""The trainer's parts (sampler, callbacks, precision) and in-process runs of its options."""

from __future__ import annotations

import hashlib
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import RunConfig
from core.data import import_dataset
from core.errors import DeviceUnavailable, UnsafeCheckpoint
from core.runs import create_run
from core.runs.store import Store
from core.train import execute_run
from core.train.callbacks import EarlyStopping
from core.train.sampler import EpochSampler
from core.train.setup import resolve_device, resolve_precision
from core.workspace import Workspace


def _run(ws: Workspace, **sections) -> tuple[dict, Store, str]:
    raw = RunConfig().to_dict()
    for section, values in sections.items():
        raw[section].update(values)
    run = create_run(ws.store, RunConfig.from_dict(raw))
    return execute_run(ws, run.id), ws.store, run.id


# -- parts -----------------------------------------------------------------------------------


def test_sampler_is_deterministic_resumable_and_sharded():
    s = EpochSampler(10, shuffle=True, seed=1)
    s.set_epoch(2)
    full = list(s)
    assert sorted(full) == list(range(10)) and full == list(s)
    s.set_epoch(3)
    assert list(s) != full
    s.set_epoch(2, start_batch=2, batch_size=3)
    assert list(s) == full[6:] and len(s) == 4
    shards = [EpochSampler(10, shuffle=False, rank=r, world_size=3, pad=True) for r in range(3)]
    assert [len(list(x)) for x in shards] == [4, 4, 4]  # equal lengths: no DDP hang
    evals = [EpochSampler(10, shuffle=False, rank=r, world_size=3) for r in range(3)]
    assert sorted(i for x in evals for i in x) == list(range(10))  # no sample counted twice


def test_early_stopping_patience_and_non_finite_loss():
    trainer = SimpleNamespace(should_stop=False)
    es = EarlyStopping("val/loss", "min", patience=2)
    for value in (1.0, 0.9, 0.95, 0.93):
        es.on_epoch_end(trainer, 0, {"val/loss": value, "train/loss": 1.0})
    assert trainer.should_stop and "did not improve" in es.reason
    restored = EarlyStopping("val/loss", "min", patience=2)
    restored.load_state_dict(es.state_dict())
    assert restored.best == 0.9 and restored.wait == 2
    trainer = SimpleNamespace(should_stop=False)
    EarlyStopping(patience=None).on_epoch_end(trainer, 0, {"train/loss": math.nan})
    assert trainer.should_stop


def test_precision_and_device_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).dtype is None
    assert resolve_precision("bf16", cpu).dtype is torch.bfloat16
    assert not resolve_precision("bf16", cpu).scaler(cpu).is_enabled()
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(DeviceUnavailable):
            resolve_device("cuda:0")


def test_malicious_checkpoint_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"model": Evil()}, fh)
    with pytest.raises(UnsafeCheckpoint):
        load_checkpoint(path)
    assert not marker.exists()
    torch.save({"model": Evil()}, path)
    with pytest.raises(UnsafeCheckpoint):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint({"w": torch.ones(2), "epoch": 3}, path)
    assert load_checkpoint(path)["epoch"] == 3
    # No temp file left; the checksum beside it, in sha256sum's format.
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt", "last.pt.sha256"]
    digest, name = (path.parent / "last.pt.sha256").read_text().split()
    assert name == "last.pt" and digest == hashlib.sha256(path.read_bytes()).hexdigest()


# -- options, in process ---------------------------------------------------------------------


def test_bf16_on_cpu_grad_accum_scheduler_and_smoothing(workspace: Workspace):
    summary, store, run_id = _run(
        workspace, train={"epochs": 2, "amp": "bf16", "grad_accum": 2, "scheduler": "cosine",
                     "label_smoothing": 0.1, "optimizer": "adamw", "weight_decay": 0.01,
                     "max_grad_norm": 1.0})
    assert summary["status"] == "completed" and summary["precision"] == "bf16"
    run = store.get_run(run_id)
    assert run.step == run.total_steps == summary["step"]
    lrs = [v for _, v in store.get_metrics(run_id, keys=["lr"])["lr"]]
    assert lrs[-1] < lrs[0]  # cosine decays
    assert summary["final"]["val/acc"] > 0.5


def test_early_stopping_ends_the_run_completed_with_a_reason(workspace: Workspace):
    summary, _, _ = _run(workspace, train={"epochs": 30, "patience": 1, "monitor": "train/loss",
                                      "lr": 10.0, "optimizer": "sgd"})
    assert summary["status"] == "completed"
    assert summary["epochs_run"] < 30 and summary["stop_reason"]


def test_fine_tune_from_another_runs_checkpoint_on_a_different_dataset(home, workspace: Workspace):
    first, _, first_id = _run(workspace, train={"epochs": 1})
    weights = home / "runs" / first_id / "checkpoints" / "best.pt"
    summary, _, run_id = _run(workspace, data={"dataset": "shapes", "image_size": 32},
                              model={"weights": str(weights), "freeze_backbone": True},
                              train={"epochs": 1})
    assert summary["status"] == "completed", summary
    tuned = load_checkpoint(home / "runs" / run_id / "checkpoints" / "last.pt")["model"]
    source = load_checkpoint(weights)["model"]
    # Frozen backbone: a conv deep in the network is still exactly the source run's.
    deep = [k for k in source if k.endswith("weight") and source[k].dim() == 4][-1]
    assert torch.equal(tuned[deep], source[deep])
    assert tuned["head.weight" if "head.weight" in tuned else list(tuned)[-2]].shape[0] == 4


def test_truncated_jpeg_is_skipped_and_reported(workspace: Workspace, tmp_path):
    root = tmp_path / "folder"
    rng = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("cats", "dogs"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (torch.rand(24, 24, 3, generator=rng) * 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    bad = root / "train" / "cats" / "0.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    import_dataset(workspace, "pets", root)
    summary, store, run_id = _run(workspace, data={"dataset": "pets"},
                                  train={"epochs": 2, "batch_size": 4})
    assert summary["status"] == "completed", summary
    assert summary["skipped_images"] == 1
    events = store.get_events(run_id, kind="skipped_images")
    assert events and events[-1].data["count"] == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_runs(workspace: Workspace):
    for amp in ("auto", "fp16", "bf16"):
        summary, _, _ = _run(workspace, train={"epochs": 1, "amp": amp, "device": "cuda"})
        assert summary["status"] == "completed" and summary["device"].startswith("cuda")
