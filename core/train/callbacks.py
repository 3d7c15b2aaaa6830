"""Training callbacks: a base class whose hooks do nothing, and the few the product needs.

Callbacks observe; the trainer owns the loop. A callback asks the loop to stop by setting
``trainer.should_stop`` (never by raising). Stateful callbacks implement ``state_dict`` so a resumed
run continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.runs.store import Store
    from core.train.trainer import Trainer

log = logging.getLogger(__name__)


class Callback:
    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...
    def on_batch_end(self, trainer: Trainer, step: int, loss: float | None) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_checkpoint(self, trainer: Trainer, epoch: int) -> None: ...
    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def is_better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return math.isfinite(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs, or the loss is not finite."""

    def __init__(self, monitor: str = "val/loss", mode: str = "min", patience: int | None = 5,
                 min_delta: float = 0.0):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.best: float | None = None
        self.wait = 0
        self.reason: str | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        loss = metrics.get("train/loss", 0.0)
        if not math.isfinite(loss):
            self.reason = f"training loss is not finite ({loss}) at epoch {epoch + 1}"
            trainer.should_stop = True
            return
        value = metrics.get(self.monitor)
        if value is None:
            return
        if is_better(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
        elif self.patience is not None:
            self.wait += 1
            if self.wait >= self.patience:
                self.reason = (f"{self.monitor} did not improve for {self.patience} epochs "
                               f"(best {self.best:.4g})")
                trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state.get("best"), state.get("wait", 0)


class StoreLogger(Callback):
    """Writes metrics, progress and a heartbeat to the run store, batched in time.

    Per-batch work is a clock read; the store is touched at most every ``every_s`` seconds
    during an epoch, and once at the end of each epoch.
    """

    def __init__(self, store: Store, run_id: str, every_s: float = 1.0, loss_every: int = 10):
        self.store, self.run_id, self.every_s, self.loss_every = store, run_id, every_s, loss_every
        self._pending: list[tuple[int, str, float]] = []
        self._last_flush = 0.0
        self._rate_start: tuple[float, int] | None = None
        self._skipped_reported = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        self._rate_start = (time.monotonic(), trainer.step)
        self._skipped_reported = sum(len(v) for v in trainer.skipped.values())  # after resume
        self.store.update_run(self.run_id, total_steps=trainer.total_steps,
                              total_epochs=trainer.config.train.epochs,
                              device=str(trainer.device), step=trainer.step,
                              heartbeat=time.time())

    def on_batch_end(self, trainer: Trainer, step: int, loss: float | None) -> None:
        if loss is not None and math.isfinite(loss):  # a diverging run must not fail on NaN
            self._pending.append((step, "train/step_loss", loss))
        now = time.monotonic()
        if now - self._last_flush >= self.every_s:
            self._flush(trainer, now)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        step = trainer.step
        self._pending.extend((step, key, value) for key, value in metrics.items()
                             if math.isfinite(value))
        # Written before the checkpoint: a kill between the two makes a resume redo this epoch
        # and write the same (step, key) rows again (replaced, not doubled); the other order
        # lost the epoch's metrics for good.
        self.store.log_metrics(self.run_id, self._pending)
        self._pending = []

    def on_checkpoint(self, trainer: Trainer, epoch: int) -> None:
        # The run's epoch moves after the checkpoint is on disk: an epoch the store shows is an
        # epoch that a resume will not redo.
        self._flush(trainer, time.monotonic(), epoch=epoch + 1)
        self._report_skipped(trainer)

    def _report_skipped(self, trainer: Trainer) -> None:
        count = sum(len(v) for v in trainer.skipped.values())
        if count > self._skipped_reported:
            ids = {split: sorted(v)[:50] for split, v in trainer.skipped.items() if v}
            self.store.add_event(self.run_id, "skipped_images",
                                 f"Skipped {count} unreadable image(s) (corrupt or truncated).",
                                 level="warning", data={"count": count, "indices": ids})
            self.store.update_run(self.run_id, summary={"skipped_images": count})
            self._skipped_reported = count

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        self._flush(trainer, time.monotonic())

    def _flush(self, trainer: Trainer, now: float, epoch: int | None = None) -> None:
        self.store.log_metrics(self.run_id, self._pending)
        self._pending = []
        self._last_flush = now
        fields: dict[str, Any] = {"step": trainer.step, "heartbeat": time.time()}
        if epoch is not None:
            fields["epoch"] = epoch
            fields["best_metric"] = trainer.best
        if self._rate_start is not None:
            t0, s0 = self._rate_start
            if now > t0 and trainer.step > s0:
                fields["summary"] = {"steps_per_s": (trainer.step - s0) / (now - t0)}
        self.store.update_run(self.run_id, **fields)
