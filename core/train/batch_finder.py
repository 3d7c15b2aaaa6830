"""The batch-size finder, and the one-line message an out-of-memory run fails with.

On a GPU: the largest batch that fits, found by doubling then bisecting on out-of-memory errors,
with the cache emptied between tries, in the precision the run would use (``--amp``). On a CPU
there is no memory wall to find, so it reports the throughput per batch size instead. Each try is
a few real training steps (forward, backward, optimizer step: Adam's state included) on one
batch of the dataset's own samples, repeated to the size tried; nothing is saved.
"""

from __future__ import annotations

import copy
import gc
import logging
import time
from typing import TYPE_CHECKING, Any

from core.config import RunConfig
from core.errors import InvalidConfig, UserError
from core.progress import ProgressFn

if TYPE_CHECKING:
    import torch

    from core.runs.records import Job
    from core.runs.store import Store
    from core.train.trainer import Trainer
    from core.workspace import Workspace

log = logging.getLogger(__name__)
KIND = "batch_find"  # the job's kind; its subject is the dataset, its key the model
CPU_SIZES = (8, 16, 32, 64, 128, 256, 512)
STEPS_PER_TRY = 3  # the first step allocates the optimizer state; later ones show the peak


class OutOfMemory(UserError):
    """A run or a try did not fit in the device's memory."""


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error, whatever torch version raised it."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()[:200]


def out_of_memory_message(config: RunConfig, device: str | None = None) -> str:
    """What a run that ran out of memory fails with: one line naming the way out."""
    t = config.train
    where = f" on {device}" if device else ""
    return (f"Out of memory{where} at batch size {t.batch_size}: lower --batch-size (with "
            f"--grad-accum K to keep the effective batch), use --amp bf16 or fp16 on a GPU, or "
            f"let `python -m core batch-find --dataset {config.data.dataset} --model "
            f"{config.model.name}` find the largest batch that fits.")


def find_batch_size(ws: Workspace, config: RunConfig, max_batch: int = 4096,
                    progress: ProgressFn | None = None) -> dict[str, Any]:
    """Largest batch that fits (GPU) or samples/s per batch size (CPU) for ``config``."""
    from core.train.trainer import Trainer

    cfg = copy.deepcopy(config)
    cfg.train.grad_accum, cfg.train.scheduler = 1, "none"
    trainer = Trainer(ws, cfg, ws.home / "tmp")
    trainer.setup()
    x, y = _one_batch(trainer)
    report: dict[str, Any] = {"device": str(trainer.device), "amp": trainer.precision.name,
                              "dataset": cfg.data.dataset, "model": cfg.model.name}
    if trainer.device.type == "cuda":
        report.update(_search_gpu(trainer, x, y, max_batch, progress))
    else:
        sizes = [b for b in CPU_SIZES if b <= max_batch]
        report.update(_sweep_cpu(trainer, x, y, sizes, progress))
    return report


def start_batch_find(store: Store, config: RunConfig, max_batch: int = 4096) -> Job:
    """The finder as a background job about ``config``'s dataset, keyed by its model (heavy: on a
    GPU it must not share the memory it measures). A finder already under way for the same
    dataset and model is returned rather than started twice (a double click). Its result (the
    job's) is what ``batch-find --json`` prints."""
    import json
    import os
    import uuid

    from core.runs.jobs import DATASET_SUBJECT, python_core, submit

    config.validate()
    subject, key = f"{DATASET_SUBJECT}{config.data.dataset}", config.model.name
    running = store.latest_job(subject, KIND, key)
    if running is not None and running.is_active:
        return running
    folder = store.home / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{KIND}-{uuid.uuid4().hex[:12]}.json"  # the form's config, as a file
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    os.replace(temp, path)
    argv = python_core("batch-find", "--config", str(path), "--max-batch", str(int(max_batch)))
    return submit(store, subject, KIND, argv, key=key)


def _one_batch(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    for x, y, _, _ in trainer.train_loader:
        if len(y):
            return x, y
    raise InvalidConfig("The training split has no readable sample to size batches with.")


def _try(trainer: Trainer, x: torch.Tensor, y: torch.Tensor, size: int) -> dict[str, Any]:
    """``STEPS_PER_TRY`` training steps at ``size``: samples/s and peak memory (MB)."""
    import torch

    reps = -(-size // len(y))
    xb, yb = x.repeat(reps, *([1] * (x.dim() - 1)))[:size], y.repeat(reps)[:size]
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    start = None
    for step in range(STEPS_PER_TRY):
        if step == 1:  # the first step pays for allocation and kernel selection
            if cuda:
                torch.cuda.synchronize(trainer.device)
            start = time.perf_counter()
        trainer.forward_backward(xb, yb, sync=True)
        trainer.optimizer_step()
    if cuda:
        torch.cuda.synchronize(trainer.device)
    elapsed = time.perf_counter() - (start or time.perf_counter())
    row: dict[str, Any] = {"batch_size": size, "fits": True,
                           "samples_per_s": (STEPS_PER_TRY - 1) * size / max(elapsed, 1e-9)}
    if cuda:
        row["peak_mb"] = torch.cuda.max_memory_allocated(trainer.device) / 2**20
    return row


def _free(trainer: Trainer) -> None:
    """What a failed try held goes back to the allocator before the next try."""
    import torch

    trainer.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if trainer.device.type == "cuda":
        torch.cuda.empty_cache()


def _attempt(trainer: Trainer, x, y, size: int) -> dict[str, Any]:
    try:
        row = _try(trainer, x, y, size)
    except Exception as exc:  # noqa: BLE001 - only an out-of-memory error is an answer
        if not is_out_of_memory(exc):
            raise
        row = {"batch_size": size, "fits": False}
    _free(trainer)
    return row


def _search_gpu(trainer: Trainer, x, y, max_batch: int,
                progress: ProgressFn | None) -> dict[str, Any]:
    tried: list[dict[str, Any]] = []
    good, bad, size = 0, None, 1
    while size <= max_batch:  # double until it does not fit
        tried.append(_attempt(trainer, x, y, size))
        if progress:
            progress(len(tried), len(tried) + 8, f"batch {size}")
        if not tried[-1]["fits"]:
            bad = size
            break
        good, size = size, size * 2
    while bad is not None and bad - good > max(1, good // 16):  # bisect to ~6 %
        mid = (good + bad) // 2
        tried.append(_attempt(trainer, x, y, mid))
        if progress:
            progress(len(tried), len(tried) + 4, f"batch {mid}")
        good, bad = (mid, bad) if tried[-1]["fits"] else (good, mid)
    import torch

    capacity = torch.cuda.get_device_properties(trainer.device).total_memory / 2**20
    return {"max_batch_size": good, "limit_reached": bad is None, "tried": tried,
            "memory_total_mb": capacity,
            "suggested_batch_size": _round_down(good), "mode": "largest batch that fits"}


def _sweep_cpu(trainer: Trainer, x, y, sizes: list[int],
               progress: ProgressFn | None) -> dict[str, Any]:
    tried = []
    for n, size in enumerate(sizes, 1):
        tried.append(_attempt(trainer, x, y, size))
        if progress:
            progress(n, len(sizes), f"batch {size}")
    fitting = [r for r in tried if r["fits"]]
    best = max(fitting, key=lambda r: r["samples_per_s"]) if fitting else None
    return {"tried": tried, "mode": "throughput per batch size (CPU)",
            "suggested_batch_size": best["batch_size"] if best else None}


def _round_down(size: int) -> int:
    """A margin below the edge (other allocations vary from step to step), a multiple of 8."""
    margin = int(size * 0.9)
    return max(1, margin - margin % 8) if margin >= 8 else max(1, margin)
