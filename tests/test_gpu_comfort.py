"""The GPU side of training comfort, on a CUDA machine only (``-m cuda``): the batch-size finder's
search on out-of-memory, a run that runs out of memory failing with one line that names the way
out, and the resource monitor reading the GPU through NVML. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from core.config import RunConfig
from core.train.batch_finder import find_batch_size
from core.train.monitor import ResourceSampler

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# A small share of the GPU, so that a batch runs out of memory within seconds on any card.
MEMORY_SHARE = 0.02


def _config(batch_size: int = 64) -> RunConfig:
    raw = RunConfig().to_dict()
    raw["data"].update(dataset="shapes", image_size=224)
    raw["model"]["name"] = "resnet18"
    raw["train"].update(epochs=1, batch_size=batch_size, device="cuda")
    return RunConfig.from_dict(raw)


@pytest.fixture
def small_gpu():
    torch.cuda.set_per_process_memory_fraction(MEMORY_SHARE)
    yield
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


def test_the_batch_finder_finds_the_edge_of_memory(ws, small_gpu) -> None:
    found = find_batch_size(ws, _config(), max_batch=4096)
    tried = {row["batch_size"]: row["fits"] for row in found["tried"]}
    best = found["max_batch_size"]
    assert tried[best] and not found["limit_reached"]
    assert any(size > best and not fits for size, fits in tried.items())  # the edge is real
    assert 1 <= found["suggested_batch_size"] <= best
    assert torch.cuda.memory_allocated() < 64 * 2**20  # every try's memory was freed


def test_a_run_out_of_memory_fails_with_one_line_naming_the_tools(ws, small_gpu) -> None:
    from core.runs import create_run
    from core.train import execute_run

    run = create_run(ws.store, _config(batch_size=4096))
    summary = execute_run(ws, run.id)
    error = ws.store.get_run(run.id).error or ""
    assert summary["status"] == "failed"
    assert error.startswith("Out of memory") and "batch-find" in error and "\n" not in error


def test_the_monitor_reads_the_gpu_through_nvml() -> None:
    sample = ResourceSampler().sample()
    assert sample["gpu0/mem_total_mb"] > 0 and "gpu0/util" in sample
