"""A trained run, loaded for inference: the model, its classes and its preprocessing.

Evaluation, prediction, explanation and export all start here, so they all see exactly the
weights (``best.pt``, else ``last.pt``) and the preprocessing that training used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.checkpoint import (
    file_signature,
    load_checkpoint,
    load_model_state,
    model_state,
    run_checkpoint,
)
from core.compress.architecture import rebuild_from_checkpoint
from core.config import RunConfig
from core.data import DatasetInfo, check_fingerprint, get_info
from core.errors import InvalidRunState
from core.workspace import Workspace


class ModelOutputs:
    """What a loaded run and a loaded ensemble compute alike from ``model``, ``device`` and
    ``checkpoint`` (an ensemble's is its fitted combiner file)."""

    model: nn.Module
    device: torch.device
    checkpoint: Path

    @cached_property
    def checkpoint_signature(self) -> str:
        """The checkpoint's signature when first asked (cached results compare against it)."""
        return file_signature(self.checkpoint)

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's outputs for a preprocessed batch (an ensemble's: log-probabilities)."""
        return self.model(batch.to(self.device)).float().cpu()

    def predict_proba(self, batch: torch.Tensor) -> np.ndarray:
        return torch.softmax(self.logits(batch), dim=1).numpy()


@dataclass
class LoadedRun(ModelOutputs):
    run_id: str
    ws: Workspace  # the paths it was loaded from (a cached LoadedRun may outlive the store)
    config: RunConfig
    info: DatasetInfo
    image_size: int | None
    model: nn.Module
    checkpoint: Path
    device: torch.device

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    @cached_property
    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        """The dataset's shared preprocessing: raw image or row -> normalised tensor."""
        from core.data.transforms import make_preprocess

        return make_preprocess(self.info, self.image_size)

    def predict_raw(self, raws: Iterable[Any]) -> np.ndarray:
        """Class probabilities for raw inputs (PIL images or feature rows), one batch."""
        return self.predict_proba(torch.stack([self.preprocess(r) for r in raws]))


def checkpoint_path(ws: Workspace, run_id: str) -> Path:
    path = run_checkpoint(ws, run_id)
    if path is not None:
        return path
    raise InvalidRunState(f"Run {run_id} has no checkpoint yet: train it for at least one "
                          "epoch first.")


def load_run(ws: Workspace, run_id: str, device: str = "cpu") -> LoadedRun:
    """Rebuild a run's model from its config and load its best weights (weights_only).

    An ensemble run loads as an ``EnsembleRun`` (its members and combiner), which predicts
    like a ``LoadedRun`` (``core.models.ensemble``).
    """
    from core.models import create_model

    run = ws.store.get_run(run_id)
    if run.kind == "ensemble":
        from core.models.ensemble import load_ensemble

        return load_ensemble(ws, run_id, device)  # type: ignore[return-value]
    config = RunConfig.from_dict(run.config)
    info = get_info(ws, config.data.dataset)
    # Refuse a dataset re-imported with other data since training (old runs recorded nothing).
    check_fingerprint(ws, run.summary.get("dataset_fingerprint"), config.data.dataset, run_id)
    image_size = config.data.image_size or info.image_size or None
    path = checkpoint_path(ws, run_id)
    # Verified against its checksum; damaged or not fitting, it is one CheckpointDamaged line.
    state = load_checkpoint(path, expect_checksum=True)
    # The architecture only: the weights come from the checkpoint, never a download.
    arch = type(config.model)(name=config.model.name)
    model = create_model(config.model.name, info, arch, image_size=image_size)
    weights = model_state(state)
    # A pruned run's checkpoint records its layers' shapes (numbers, never a pickled module).
    rebuild_from_checkpoint(model, state, weights)
    load_model_state(model, weights, path)
    target = torch.device(device)
    model.to(target).eval()
    return LoadedRun(run_id, ws, config, info, image_size, model, path, target)
