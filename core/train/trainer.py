"""The training loop: small functions, read like pseudocode.

``fit`` = for each epoch: ``train_one_epoch`` -> ``validate`` -> callbacks -> checkpoint. Mixed
precision is one context that is a no-op when off; the scaler is only enabled for fp16. Under
torchrun the model is wrapped in DDP and only the main rank writes anything.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from core.checkpoint import (
    FORMAT,
    damaged,
    load_checkpoint,
    load_model_state,
    model_state,
    save_checkpoint,
)
from core.config import RunConfig
from core.data.folds import load_for_config
from core.data.torchdata import build_torch_split, collate_skipping
from core.errors import InvalidRunState
from core.models import create_model
from core.train import distributed as dist
from core.train.callbacks import Callback, is_better
from core.train.sampler import EpochSampler, balanced_weights, inverse_frequency
from core.train.setup import build_optimizer, build_scheduler, resolve_device, resolve_precision

if TYPE_CHECKING:
    from core.workspace import Workspace

log = logging.getLogger(__name__)
STEP_LOSS_EVERY = 10  # optimizer steps between logged step losses (each costs a device sync)


class Trainer:
    def __init__(self, ws: Workspace, config: RunConfig, run_dir: Path,
                 callbacks: list[Callback] | tuple[Callback, ...] = ()):
        self.ws = ws  # where the dataset is found
        self.config = config
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        self.dist = dist.detect()
        self.device = resolve_device(config.train.device, self.dist.local_rank)
        self.precision = resolve_precision(config.train.amp, self.device)
        self.should_stop = False  # set by callbacks (early stopping); agreed across ranks
        self.stop_requested = False  # set by a signal handler (cancel); ends the run "cancelled"
        self.step = 0
        self.epoch = 0  # completed epochs
        self.best: float | None = None
        self.skipped: dict[str, set[int]] = {"train": set(), "val": set()}
        self.history: list[dict[str, float]] = []
        self.started = False  # the loop began: a resume that fails before it stays resumable

    # -- setup -----------------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.config
        dist.init(self.dist, self.device)
        torch.manual_seed(cfg.train.seed)
        self.dataset = load_for_config(self.ws, cfg.data)  # a CV fold run: its fold
        info = self.dataset.info
        self.image_size = cfg.data.image_size or info.image_size or None
        self.train_loader = self._loader("train", train=True)
        self.val_loader = self._loader("val", train=False)
        self.model = create_model(cfg.model.name, info, cfg.model,
                                  image_size=self.image_size).to(self.device)
        self.raw_model = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.criterion = nn.CrossEntropyLoss(weight=self._class_weights(),
                                             label_smoothing=cfg.train.label_smoothing)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.train)
        batches = len(self.train_loader.batch_sampler)  # full epoch from batch 0
        self.steps_per_epoch = math.ceil(batches / cfg.train.grad_accum)
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.scheduler = build_scheduler(self.optimizer, cfg.train, self.steps_per_epoch)
        self.scaler = self.precision.scaler(self.device)

    def _loader(self, split: str, train: bool) -> DataLoader:
        cfg = self.config
        data = build_torch_split(self.dataset, split, self.image_size, train=train,
                                 augment=cfg.data.augment if train else ())
        weights = balanced_weights(data.labels) if train and cfg.train.balanced_sampler \
            else None
        sampler = EpochSampler(len(data), shuffle=train, seed=cfg.train.seed,
                               rank=self.dist.rank, world_size=self.dist.world_size, pad=train,
                               weights=weights)
        workers = cfg.data.num_workers
        # A private generator: creating an iterator draws a worker base seed from it, and that
        # draw must not shift the global RNG (dropout, augmentation) or resume would not be exact.
        generator = torch.Generator().manual_seed(cfg.train.seed)
        return DataLoader(data, batch_size=cfg.train.batch_size, sampler=sampler,
                          generator=generator,
                          num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=cfg.data.pin_memory and self.device.type == "cuda",
                          collate_fn=collate_skipping)

    def _class_weights(self) -> torch.Tensor | None:
        """Inverse-frequency weights over the training split's labels (``--class-weights``)."""
        if not self.config.train.class_weights:
            return None
        weights = inverse_frequency(self.dataset.labels("train"),
                                    len(self.dataset.info.classes))
        return torch.as_tensor(weights, dtype=torch.float32, device=self.device)

    # -- the loop --------------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> dict[str, Any]:
        self.setup()
        start_batch, partial = 0, None
        if resume:
            start_batch, partial = self.restore(self.run_dir / "checkpoints" / "last.pt")
        self._dispatch("on_fit_start")
        self.started = True
        status = "completed"
        for epoch in range(self.epoch, self.config.train.epochs):
            if self.should_stop:
                break
            self._dispatch("on_epoch_start", epoch)
            train_metrics = self.train_one_epoch(epoch, start_batch, partial)
            start_batch, partial = 0, None
            if train_metrics is None:
                status = "cancelled"
                break
            self.end_epoch(epoch, train_metrics)
        summary = self.summary(status)
        self._dispatch("on_fit_end", summary)
        return summary

    def train_one_epoch(self, epoch: int, start_batch: int = 0,
                        partial: dict[str, Any] | None = None) -> dict[str, float] | None:
        """Train one epoch; None if a stop was requested (a mid-epoch checkpoint is saved)."""
        cfg = self.config.train
        loader = self.train_loader
        loader.sampler.set_epoch(epoch, start_batch, cfg.batch_size)
        if start_batch == 0:
            torch.manual_seed(cfg.seed * 1_000 + epoch)  # dropout/augmentation: exact on resume
        n_batches = start_batch + len(loader)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, correct, count
        elapsed = waited = 0.0  # waited: time blocked on the data loader for the next batch
        if partial:
            sums += torch.tensor(partial["sums"], dtype=torch.float64, device=self.device)
            elapsed, waited = partial["elapsed"], partial.get("waited", 0.0)
        self.model.train()
        if self.config.model.freeze_backbone:
            _freeze_norm_stats(self.raw_model)
        t0 = time.perf_counter()
        batches = iter(loader)
        for i in range(start_batch, n_batches):
            t_ask = time.perf_counter()
            x, y, idx, skipped = next(batches)
            waited += time.perf_counter() - t_ask
            self.skipped["train"].update(skipped)
            last_micro = (i + 1) % cfg.grad_accum == 0 or i + 1 == n_batches
            if len(y):
                sums += self.forward_backward(x, y, sync=last_micro, idx=idx)
            if not last_micro:
                continue
            self.optimizer_step()
            loss = sums[0].item() / max(sums[2].item(), 1) if self.step % STEP_LOSS_EVERY == 0 \
                else None
            self._dispatch("on_batch_end", self.step, loss)
            if dist.any_rank(self.stop_requested, self.device) if self.dist.enabled \
                    else self.stop_requested:
                elapsed += time.perf_counter() - t0
                self.save(batch_in_epoch=i + 1,
                          partial={"sums": sums.tolist(), "elapsed": elapsed, "waited": waited})
                return None
        elapsed += time.perf_counter() - t0
        sums = dist.all_reduce_sum(sums)
        loss, correct, count = sums.tolist()
        return {"train/loss": loss / max(count, 1), "train/acc": correct / max(count, 1),
                "throughput": count / max(elapsed, 1e-9), "epoch_time": elapsed,
                "data_wait": waited / max(elapsed, 1e-9)}

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, sync: bool,
                         idx: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        # DDP all-reduces gradients on every backward; skip it on accumulation micro-batches.
        no_sync = self.model.no_sync() if self.dist.enabled and not sync \
            else contextlib.nullcontext()
        with no_sync:
            with self.precision.autocast(self.device):
                logits = self.model(x)
                loss = self.compute_loss(logits, y, x, idx)
            self.scaler.scale(loss / self.config.train.grad_accum).backward()
        n = y.shape[0]
        correct = (logits.detach().argmax(1) == y).sum()
        return torch.stack([loss.detach().double() * n, correct.double(),
                            torch.tensor(float(n), dtype=torch.float64, device=self.device)])

    def compute_loss(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
                     idx: torch.Tensor | None) -> torch.Tensor:
        """One batch's training loss; a subclass may use the inputs and their positions in the
        split (distillation asks its teacher about them)."""
        return self.criterion(logits, y)

    def optimizer_step(self) -> None:
        cfg = self.config.train
        if cfg.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        # The unwrapped module: evaluation needs no gradient sync (and no DDP collectives).
        model = self.raw_model
        model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for x, y, _, skipped in self.val_loader:
            self.skipped["val"].update(skipped)
            if not len(y):
                continue
            x, y = x.to(self.device), y.to(self.device)
            with self.precision.autocast(self.device):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            sums += torch.stack([loss.double(), (logits.argmax(1) == y).sum().double(),
                                 torch.tensor(float(len(y)), dtype=torch.float64,
                                              device=self.device)])
        loss, correct, count = dist.all_reduce_sum(sums).tolist()
        if not count:
            return {}
        return {"val/loss": loss / count, "val/acc": correct / count}

    def end_epoch(self, epoch: int, train_metrics: dict[str, float]) -> None:
        metrics = {**train_metrics, **self.validate(),
                   "lr": self.optimizer.param_groups[0]["lr"], "epoch": float(epoch + 1)}
        self.epoch = epoch + 1
        self.history.append(metrics)
        monitored = metrics.get(self.config.train.monitor)
        improved = monitored is not None and is_better(monitored, self.best,
                                                       self.config.train.mode)
        if improved:
            self.best = monitored
        self._dispatch("on_epoch_end", epoch, metrics)
        self.should_stop = dist.any_rank(self.should_stop, self.device) if self.dist.enabled \
            else self.should_stop
        self.save(best=improved)
        self._dispatch("on_checkpoint", epoch)

    # -- checkpoints -----------------------------------------------------------------------------

    def state_dict(self, batch_in_epoch: int = 0, partial: dict | None = None) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": FORMAT,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "step": self.step, "batch_in_epoch": batch_in_epoch,
            "partial": partial, "best": self.best, "should_stop": self.should_stop,
            "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
            "history": self.history,
            "skipped": {k: sorted(v) for k, v in self.skipped.items()},
            "rng": rng, "config": self.config.to_dict(),
            "classes": list(self.dataset.info.classes), "dataset": self.dataset.info.name,
        }

    def save(self, best: bool = False, batch_in_epoch: int = 0,
             partial: dict | None = None) -> None:
        if not self.dist.is_main:
            return
        folder = self.run_dir / "checkpoints"
        save_checkpoint(self.state_dict(batch_in_epoch, partial), folder / "last.pt",
                        copies=(folder / "best.pt",) if best else ())

    def restore(self, path: Path) -> tuple[int, dict | None]:
        """Load everything for an exact resume; returns (batch to start at, partial sums).

        A checkpoint that is damaged or does not fit raises ``CheckpointDamaged`` (one line).
        """
        if not path.is_file():
            raise InvalidRunState("This run has no checkpoint to resume from yet "
                                  "(it stopped before its first epoch ended). Start it again.")
        state = load_checkpoint(path, expect_checksum=True)
        if state.get("format") != FORMAT:
            raise damaged(path, f"it is not a run checkpoint (format {state.get('format')!r})")
        load_model_state(self.raw_model, model_state(state), path)
        try:
            return self._restore_training_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            lines = str(exc).strip().splitlines() or [""]
            reason = f"missing entry {exc}" if isinstance(exc, KeyError) else \
                f"{type(exc).__name__}: {lines[0][:160]}"
            raise damaged(path, f"its training state cannot be restored ({reason})") from None

    def _restore_training_state(self, state: dict[str, Any]) -> tuple[int, dict | None]:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        self.should_stop = state.get("should_stop", False)
        self.history = list(state.get("history", []))
        self.skipped = {k: set(v) for k, v in state.get("skipped", {}).items()}
        for cb in self.callbacks:
            cb.load_state_dict(state["callbacks"].get(type(cb).__name__, {}))
        if state["batch_in_epoch"]:
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        return state["batch_in_epoch"], state["partial"]

    # -- helpers ---------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stop_requested = True

    def summary(self, status: str) -> dict[str, Any]:
        reasons = [getattr(cb, "reason", None) for cb in self.callbacks]
        stop_reason = next((r for r in reasons if r), None)
        final = self.history[-1] if self.history else {}
        best_epoch = None
        if self.history and self.best is not None:
            key = self.config.train.monitor
            best_epoch = next((h for h in self.history if h.get(key) == self.best), None)
        return {
            "status": status, "epochs_run": self.epoch, "step": self.step,
            "stop_reason": stop_reason, "monitor": self.config.train.monitor, "best": self.best,
            "final": {k: v for k, v in final.items() if k.startswith(("val/", "train/"))},
            "best_epoch": {k: v for k, v in (best_epoch or {}).items()
                           if k.startswith(("val/", "train/", "epoch"))},
            "skipped_images": sum(len(v) for v in self.skipped.values()),
            "device": str(self.device), "precision": self.precision.name,
            "world_size": self.dist.world_size,
        }

    def _dispatch(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)


def _freeze_norm_stats(model: nn.Module) -> None:
    """A frozen backbone keeps its BatchNorm statistics too, not only its weights."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters(recurse=False)):
            module.eval()
