"""The train options the data-health report suggests: ``--class-weights`` (inverse-frequency
weights in the loss) and ``--balanced-sampler`` (class-balanced draws that resume exactly and
shard over DDP ranks); and an out-of-memory failure's one-line message."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import load_checkpoint
from core.config import RunConfig
from core.data import import_dataset
from core.runs import create_run
from core.train import execute_run
from core.train.callbacks import Callback
from core.train.sampler import EpochSampler, balanced_weights, inverse_frequency
from core.train.trainer import Trainer
from core.workspace import Workspace

MAJOR, MINOR = 400, 20  # 20:1


@pytest.fixture(scope="module")
def skewed(ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-class table with a 20:1 imbalance (the minority shifted, so it is learnable)."""
    rng = np.random.default_rng(0)
    rows = [(*rng.normal(size=3), "common") for _ in range(MAJOR)]
    rows += [(*(rng.normal(size=3) + 1.5), "rare") for _ in range(MINOR)]
    path = tmp_path_factory.mktemp("csv") / "skewed.csv"
    path.write_text("a,b,c,label\n" + "".join(f"{a:.4f},{b:.4f},{c:.4f},{k}\n"
                                              for a, b, c, k in rows))
    import_dataset(ws, "skewed", path, target="label")
    return "skewed"


def config(dataset: str, **train) -> RunConfig:
    raw = RunConfig().to_dict()
    raw["data"]["dataset"], raw["model"]["name"] = dataset, "mlp"
    raw["train"].update({"epochs": 2, "batch_size": 16, "resource_every": 0, **train})
    return RunConfig.from_dict(raw)


def test_class_weights_are_inverse_frequency_in_the_loss(ws: Workspace, skewed: str):
    trainer = Trainer(ws, config(skewed, class_weights=True), ws.home / "unused")
    trainer.setup()
    labels = trainer.dataset.labels("train")
    counts = np.bincount(labels, minlength=2)
    expected = counts.sum() / (2 * counts)
    assert torch.allclose(trainer.criterion.weight.cpu(), torch.tensor(expected).float())
    assert expected[trainer.dataset.info.classes.index("rare")] > 10  # the rare class counts
    # The loss is the weighted mean: a misclassified rare sample costs ~20x a common one.
    both = trainer.criterion(torch.tensor([[0.0, 3.0], [3.0, 0.0]]), torch.tensor([0, 1]))
    w = torch.tensor(expected).float()
    ce = torch.nn.functional.cross_entropy(torch.tensor([[0.0, 3.0], [3.0, 0.0]]),
                                           torch.tensor([0, 1]), reduction="none")
    assert both.item() == pytest.approx(((w * ce).sum() / w.sum()).item())
    plain = Trainer(ws, config(skewed), ws.home / "unused")
    plain.setup()
    assert plain.criterion.weight is None  # off by default


def test_inverse_frequency_gives_an_absent_class_weight_one():
    assert inverse_frequency(np.array([0, 0, 0, 2]), 3).tolist() == [4 / 6, 1.0, 4 / 2]


def test_balanced_sampler_draws_classes_evenly_deterministically_and_shards():
    labels = np.array([0] * MAJOR + [1] * MINOR)
    weights = balanced_weights(labels)
    sampler = EpochSampler(len(labels), shuffle=True, seed=3, weights=weights)
    sampler.set_epoch(0)
    first = list(sampler)
    drawn = Counter(labels[first].tolist())
    assert len(first) == len(labels)  # an epoch keeps its length
    assert 0.4 < drawn[1] / len(first) < 0.6  # ~half rare, not 1/21
    assert first == list(sampler)  # seeded by (seed, epoch): a resume sees the same draw
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0, start_batch=5, batch_size=8)
    assert list(sampler) == first[40:]  # resuming mid-epoch skips what was trained on
    shards = [EpochSampler(len(labels), shuffle=True, seed=3, rank=r, world_size=2, pad=True,
                           weights=weights) for r in range(2)]
    for s in shards:
        s.set_epoch(0)
    assert [len(list(s)) for s in shards] == [210, 210]  # equal lengths: no DDP hang
    assert sorted(list(shards[0]) + list(shards[1])) == sorted(first)  # one draw, split


class StopAt(Callback):
    """Asks the loop to stop (as SIGTERM would) after optimizer step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_batch_end(self, trainer, step, loss):
        if step == self.step:
            trainer.request_stop()


def _final_weights(ws: Workspace, run_id: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(ws.run_dir(run_id) / "checkpoints" / "last.pt")["model"]


def test_balanced_sampler_and_class_weights_resume_exactly(ws: Workspace, skewed: str):
    cfg = config(skewed, class_weights=True, balanced_sampler=True, epochs=2)
    straight = create_run(ws.store, cfg)
    assert execute_run(ws, straight.id)["status"] == "completed"

    stopped = create_run(ws.store, cfg)
    assert execute_run(ws, stopped.id, callbacks=[StopAt(25)])["status"] == "cancelled"
    assert ws.store.set_status(stopped.id, "queued", expect=("cancelled",))
    assert execute_run(ws, stopped.id, resume=True)["status"] == "completed"

    a, b = _final_weights(ws, straight.id), _final_weights(ws, stopped.id)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ws.store.get_run(stopped.id).summary["final"] == \
        ws.store.get_run(straight.id).summary["final"]


class OutOfMemoryAt(Callback):
    """Raises the error torch raises when CUDA memory runs out, from inside the loop."""

    def on_batch_end(self, trainer, step, loss):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; "
                                     "79.15 GiB total capacity)")


def test_out_of_memory_fails_the_run_with_one_line_naming_the_tools(ws: Workspace,
                                                                    skewed: str):
    run = create_run(ws.store, config(skewed, batch_size=32))
    summary = execute_run(ws, run.id, callbacks=[OutOfMemoryAt()])
    stored = ws.store.get_run(run.id)
    assert summary["status"] == stored.status == "failed"
    assert summary["user_error"] and "\n" not in stored.error
    assert stored.error.startswith("Out of memory on cpu at batch size 32")
    assert "batch-find" in stored.error and "--batch-size" in stored.error
    assert "Tried to allocate" not in stored.error  # the raw CUDA text stays in the log
    assert "OutOfMemoryError" in Path(ws.run_dir(run.id) / "log.txt").read_text()
