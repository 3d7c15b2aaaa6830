"""The trainer of a ``pruned`` run: prune the source run's best weights, then fine-tune.

A normal :class:`~core.train.trainer.Trainer` (live curves, cancel, exact resume) whose model is
the source run's, pruned in ``prune.steps`` rounds: round ``k`` happens at the start of epoch
``(k - 1) * epochs / steps`` and is followed by that many fine-tune epochs. Every checkpoint
records the network's layer shapes (``core.compress.architecture``) and how many rounds are
done, so a resume rebuilds the pruned network from ``last.pt`` alone, and so do Evaluate,
Predict, Explain and Export (``core.models.loaded.load_run``).
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from core.checkpoint import load_checkpoint, model_state
from core.compress.architecture import ARCHITECTURE_KEY, describe, rebuild_from_checkpoint
from core.compress.prune import apply_masks, count, example_input, masks, prune_round, sparsity
from core.config import ModelConfig
from core.errors import InvalidConfig
from core.models import create_model
from core.train.setup import build_optimizer, build_scheduler
from core.train.trainer import Trainer

log = logging.getLogger(__name__)

STATE_KEY = "prune"  # the checkpoint entry: rounds done and the source's counts
TAYLOR_BATCHES = 4  # training batches whose gradients rank channels for Taylor importance


class PruneTrainer(Trainer):
    def fit(self, resume: bool = False) -> dict[str, Any]:
        self.resuming = resume  # setup() needs to know which network to start from
        return super().fit(resume)

    def setup(self) -> None:
        if self.dist.enabled:
            raise InvalidConfig("A pruned run fine-tunes in one process: drop --nproc.")
        super().setup()
        self.settings = self.config.prune
        info = self.dataset.info
        self.example = example_input(info, self.image_size, self.device)
        self.masks: dict | None = None
        last = self.run_dir / "checkpoints" / "last.pt"
        if getattr(self, "resuming", False) and last.is_file():
            state = load_checkpoint(last, expect_checksum=True)
            model = create_model(self.config.model.name, info,
                                 ModelConfig(name=self.config.model.name),
                                 image_size=self.image_size)
            rebuild_from_checkpoint(model, state, model_state(state))  # restore() loads weights
            self.rounds = int(state[STATE_KEY]["rounds"])
            self.base = dict(state[STATE_KEY]["base"])
        else:
            from core.models.loaded import load_run

            model = load_run(self.ws, self.settings.source, device=str(self.device)).model
            self.rounds, self.base = 0, count(model, self.example)
        self.use_model(model)

    def use_model(self, model: nn.Module) -> None:
        """Train ``model`` from here on: pruning replaced its parameters, so the optimizer is new
        (its moments would not fit) and the schedule goes on from where it was."""
        self.model = self.raw_model = model.to(self.device)
        previous = self.scheduler
        self.optimizer = build_optimizer(model.parameters(), self.config.train)
        self.scheduler = build_scheduler(self.optimizer, self.config.train, self.steps_per_epoch)
        if previous is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(previous.state_dict())
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr(),
                                 strict=True):
                group["lr"] = lr

    # -- the rounds ------------------------------------------------------------------------------

    def train_one_epoch(self, epoch: int, start_batch: int = 0,
                        partial: dict[str, Any] | None = None) -> dict[str, float] | None:
        if start_batch == 0:  # a mid-epoch resume continues the network it checkpointed
            self.prune_due(epoch)
        if self.settings.method == "unstructured" and self.masks is None and self.rounds:
            self.masks = masks(self.raw_model)  # resumed: the zeros in the weights are the masks
        return super().train_one_epoch(epoch, start_batch, partial)

    def prune_due(self, epoch: int) -> None:
        per_round = self.config.train.epochs // self.settings.steps
        due = min(self.settings.steps, epoch // per_round + 1)
        while self.rounds < due:
            self.rounds += 1
            prune_round(self.raw_model, self.settings, self.rounds, self.example, self.base,
                        self.taylor_gradients)
            self.use_model(self.raw_model)
            # best.pt is the best of the last round's network: the smaller one is what was asked.
            self.best = None
            if self.settings.method == "unstructured":
                self.masks = masks(self.raw_model)

    def taylor_gradients(self, model: nn.Module) -> None:
        """Accumulate ``.grad`` over a few training batches (first-order Taylor importance)."""
        model.eval()  # batch-norm statistics stay as trained
        for i, (x, y, _, _) in enumerate(self.train_loader):
            if i >= TAYLOR_BATCHES:
                break
            if len(y):
                loss = self.criterion(model(x.to(self.device)), y.to(self.device))
                loss.backward()

    def optimizer_step(self) -> None:
        super().optimizer_step()
        if self.masks:  # weight decay and momentum would revive pruned weights
            apply_masks(self.raw_model, self.masks)

    # -- what a checkpoint and the summary add ---------------------------------------------------

    def state_dict(self, batch_in_epoch: int = 0, partial: dict | None = None) -> dict[str, Any]:
        state = super().state_dict(batch_in_epoch, partial)
        state[ARCHITECTURE_KEY] = describe(self.raw_model)
        state[STATE_KEY] = {"rounds": self.rounds, "base": self.base}
        return state

    def summary(self, status: str) -> dict[str, Any]:
        summary = super().summary(status)
        if hasattr(self, "base"):
            now = count(self.raw_model, self.example)
            summary["compress"] = {
                "method": self.settings.method, "rounds": self.rounds, **now,
                "parent_params": self.base["params"], "parent_macs": self.base["macs"],
                "params_ratio": round(now["params"] / max(self.base["params"], 1), 4),
                "macs_ratio": round(now["macs"] / max(self.base["macs"], 1), 4),
                "sparsity": sparsity(self.raw_model)}
        return summary
