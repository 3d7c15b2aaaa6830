"""Knowledge distillation: a student learns from a trained teacher run's soft predictions.

Loss (Hinton et al., 2015)::

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels)

The ``T^2`` keeps the soft term's gradients on the scale of the hard one whatever ``T``. The
teacher (any trained run, an ensemble included) answers under ``no_grad`` on the trainer's
device. It sees each sample through its *own* preprocessing: when its input size is the
student's (and always for tables) it reads the student's batch as is, augmentations included;
otherwise it reads the same samples, by their position in the split, at its own size (without
the student's augmentations).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from core.errors import InvalidRunState
from core.train.trainer import Trainer


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.7,
                      hard: torch.Tensor | None = None) -> torch.Tensor:
    """The blended loss of one batch; ``hard``: the label loss if already computed (e.g. with
    label smoothing or class weights), else plain cross-entropy."""
    t = float(temperature)
    soft = F.kl_div(F.log_softmax(student.float() / t, dim=1),
                    F.log_softmax(teacher.float() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    if hard is None:
        hard = F.cross_entropy(student.float(), labels)
    return alpha * soft + (1 - alpha) * hard


class Teacher:
    """A trained run that answers "your logits for these samples" on the student's device."""

    def __init__(self, loaded: Any, dataset: Any, student_size: int | None,
                 device: torch.device):
        from core.models.ensemble import EnsembleRun

        self.loaded = loaded
        self.device = device
        # One network answers directly; an ensemble combines its members' probabilities.
        self.network = None if isinstance(loaded, EnsembleRun) else loaded.model.eval()
        size = getattr(loaded, "image_size", None)
        same = dataset.info.modality == "tabular" or size == student_size
        if not same and size is None:
            raise InvalidRunState(f"Teacher {loaded.run_id} is an ensemble whose members use "
                                  "different input sizes; distill from one of its members.")
        self.own_inputs = None
        if not same:  # the same samples, preprocessed at the teacher's size (no augmentation)
            from core.data.torchdata import build_torch_split

            self.own_inputs = build_torch_split(dataset, "train", size)

    @torch.no_grad()
    def logits(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        if self.own_inputs is not None:
            if idx is None:
                raise ValueError("a teacher with its own input size needs the batch's indices")
            from core.data.torchdata import collate_skipping

            x = collate_skipping(self.own_inputs.__getitems__(idx.tolist()))[0]
        x = x.to(self.device)
        if self.network is not None:
            return self.network(x).float()
        return self.loaded.logits(x).to(self.device)  # log of the ensemble's probabilities


class DistillTrainer(Trainer):
    """A normal training run whose loss also listens to ``config.distill.teacher``."""

    def setup(self) -> None:
        super().setup()
        from core.models.loaded import load_run

        settings = self.config.distill
        self.temperature, self.alpha = settings.temperature, settings.alpha
        loaded = load_run(self.ws, settings.teacher, device=str(self.device))
        self.teacher = Teacher(loaded, self.dataset, self.image_size, self.device)

    def compute_loss(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
                     idx: torch.Tensor | None) -> torch.Tensor:
        teacher = self.teacher.logits(x, idx)
        return distillation_loss(logits, teacher, y, self.temperature, self.alpha,
                                 hard=self.criterion(logits, y))
