"""A tqdm progress bar on stderr for blocking CLI training (a trainer callback)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from core.train.callbacks import Callback


class TqdmProgress(Callback):
    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_fit_start(self, trainer) -> None:
        self.bar = tqdm(total=trainer.total_steps, initial=trainer.step, unit="step",
                        file=sys.stderr, dynamic_ncols=True, leave=False)

    def on_batch_end(self, trainer, step: int, loss: float | None) -> None:
        self.bar.update(step - self.bar.n)
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, float]) -> None:
        shown = {k.split("/")[0][0] + "_" + k.split("/")[-1]: f"{v:.4f}"
                 for k, v in metrics.items() if k.startswith(("train/", "val/"))}
        self.bar.set_description(f"epoch {epoch + 1}/{trainer.config.train.epochs}")
        self.bar.set_postfix(shown)

    def on_fit_end(self, trainer, summary: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
