"""An ensemble run, loaded for inference: its members' ``LoadedRun``, its fitted combiner and
the two ways to run them.

``core.models.loaded.load_run`` returns an ``EnsembleRun`` for a run of kind ``ensemble``, and
it offers what a ``LoadedRun`` does, so Predict, Explain and Export work on it unchanged:

- ``predict_raw`` (Predict's files): each member preprocesses the raw inputs its own way (its
  own input size), and ``core.analyze.combiners.combine`` combines them: what Evaluate stores.
- ``model`` (explain, export, ``predict_proba`` of a preprocessed batch): the ensemble as ONE
  network, ``core.models.ensemble_graph.EnsembleGraph``, on the shared ``preprocess`` at the
  ensemble's ``image_size``. For members of one input size (and tables) it equals the first
  way; a member of another size sees the shared input resized in the graph.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.analyze.combiners import combine
from core.data import DatasetInfo
from core.errors import InvalidConfig
from core.models.loaded import LoadedRun, ModelOutputs
from core.workspace import Workspace


@dataclass
class EnsembleRun(ModelOutputs):
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
        """The first member's ``RunConfig`` (the dataset section is shared by all members),
        with the model named ``ensemble``."""
        from dataclasses import replace

        first = self.members[0].config
        return replace(first, model=replace(first.model, name="ensemble"))

    @property
    def image_size(self) -> int | None:
        """The ensemble's input size (None for tables): ``ensemble_graph.input_size``."""
        from core.models.ensemble_graph import input_size

        native = self.info.image_size if self.info.builtin else None
        return input_size([m.image_size for m in self.members], native)

    @property
    def shares_preprocess(self) -> bool:
        """Whether one preprocessed tensor fits every member (tables; equal image sizes)."""
        return self.info.modality == "tabular" or len({m.image_size for m in self.members}) == 1

    @cached_property
    def preprocess(self) -> Any:
        """The shared preprocessing of ``model``'s input (at ``image_size``)."""
        from core.data.transforms import make_preprocess

        return make_preprocess(self.info, self.image_size)

    @cached_property
    def model(self) -> torch.nn.Module:
        """The ensemble as one network (members and combiner): ``EnsembleGraph``."""
        from core.models.ensemble_graph import EnsembleGraph

        graph = EnsembleGraph([m.model for m in self.members],
                              [m.image_size for m in self.members], self.combiner,
                              len(self.classes), self.image_size)
        return graph.to(self.device).eval()

    def member(self, run_id: str) -> LoadedRun:
        """The loaded member ``run_id``; refused with the members' ids if it is not one."""
        for loaded in self.members:
            if loaded.run_id == run_id:
                return loaded
        members = ", ".join(m.run_id for m in self.members)
        raise InvalidConfig(f"Run {run_id} is not a member of ensemble {self.run_id}; its "
                            f"members are {members}.")

    def predict_raw(self, raws: Iterable[Any]) -> np.ndarray:
        """Combined probabilities of raw inputs (PIL images or feature rows), each member
        preprocessing them its own way."""
        raws = list(raws)
        return combine(self.combiner, [m.predict_raw(raws) for m in self.members])


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
