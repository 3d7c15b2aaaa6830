"""An ensemble run, loaded for inference: its members' ``LoadedRun`` and its fitted combiner.

``core.models.loaded.load_run`` returns an ``EnsembleRun`` for a run of kind ``ensemble``, so
Predict (files, rows) works on it unchanged: it offers what prediction uses (``classes``,
``info``, ``predict_raw``, ``predict_proba``, ``preprocess`` for tables and equal input sizes).
Each member preprocesses raw inputs with its own preprocessing, so image members may use
different input sizes. What needs one network (``model``: explain, export) is refused with one
line for now.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.analyze.combiners import EPS, combine
from core.checkpoint import file_signature
from core.data import DatasetInfo
from core.errors import InvalidRunState
from core.models.loaded import LoadedRun
from core.workspace import Workspace


@dataclass
class EnsembleRun:
    run_id: str
    ws: Workspace
    info: DatasetInfo
    members: list[LoadedRun]
    combiner: dict[str, Any]
    checkpoint: Path  # runs/<id>/ensemble.json
    device: torch.device

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    @property
    def config(self) -> Any:
        """The first member's ``RunConfig`` (the dataset section is shared by all members)."""
        return self.members[0].config

    @property
    def image_size(self) -> int | None:
        sizes = {m.image_size for m in self.members}
        return sizes.pop() if len(sizes) == 1 else None

    @property
    def shares_preprocess(self) -> bool:
        """Whether one preprocessed tensor fits every member (tables; equal image sizes)."""
        return self.info.modality == "tabular" or len({m.image_size for m in self.members}) == 1

    @property
    def preprocess(self) -> Any:
        if not self.shares_preprocess:
            raise self.unsupported("explain and export (its members use different input "
                                   "sizes)")
        return self.members[0].preprocess

    @property
    def model(self) -> Any:
        raise self.unsupported("explain and export")

    @cached_property
    def checkpoint_signature(self) -> str:
        return file_signature(self.checkpoint)

    def predict_proba(self, batch: torch.Tensor) -> np.ndarray:
        """Combined probabilities of an already preprocessed batch (shared preprocessing)."""
        if not self.shares_preprocess:
            raise self.unsupported("predicting a preprocessed tensor (its members use "
                                   "different input sizes)")
        return combine(self.combiner, [m.predict_proba(batch) for m in self.members])

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Log of the combined probabilities: a softmax of them gives the probabilities back."""
        return torch.from_numpy(np.log(np.maximum(self.predict_proba(batch), EPS))).float()

    def predict_raw(self, raws: Iterable[Any]) -> np.ndarray:
        """Combined probabilities of raw inputs (PIL images or feature rows), each member
        preprocessing them its own way."""
        raws = list(raws)
        return combine(self.combiner, [m.predict_raw(raws) for m in self.members])

    def unsupported(self, what: str) -> InvalidRunState:
        members = ", ".join(m.run_id for m in self.members)
        return InvalidRunState(f"Run {self.run_id} is an ensemble: {what} is not yet supported "
                               f"for ensembles; use one of its members ({members}).")


def load_ensemble(ws: Workspace, run_id: str, device: str = "cpu") -> EnsembleRun:
    """Load every member (``load_run``) and the fitted combiner of ensemble ``run_id``."""
    from core.analyze.ensemble import combiner_path, read_combiner
    from core.data import check_fingerprint, get_info
    from core.models.loaded import load_run

    run = ws.store.get_run(run_id)
    combiner = read_combiner(ws, run_id)  # refuses a member retrained since fitting
    info = get_info(ws, run.dataset)
    check_fingerprint(ws, run.summary.get("dataset_fingerprint"), run.dataset, run_id)
    members = [load_run(ws, m, device=device) for m in combiner["members"]]
    return EnsembleRun(run_id, ws, info, members, combiner, combiner_path(ws, run_id),
                       torch.device(device))
