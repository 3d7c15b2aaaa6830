"""Integrated Gradients (captum), from a baseline of the dataset's mean colour."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from core.explain.base import Budget, Explainer
from core.explain.registry import register_explainer
from core.progress import ProgressFn

if TYPE_CHECKING:
    import torch


@register_explainer(
    "ig", modality="image", display_name="Integrated Gradients", order=2,
    description="Gradients integrated along the straight path from a baseline (the dataset's "
                "mean colour) to the image; n_steps batched forward and backward passes.")
class IntegratedGradientsExplainer(Explainer):
    defaults = {**Explainer.defaults, "n_steps": 32, "internal_batch_size": 32}
    limits = {**Explainer.limits, "n_steps": (2, 1024), "internal_batch_size": (1, 1024)}

    def _attribute(self, x: torch.Tensor, target: int, budget: Budget,
                   progress: ProgressFn) -> np.ndarray:
        import torch
        from captum.attr import IntegratedGradients

        steps = int(self.params["n_steps"])
        batch = min(int(self.params["internal_batch_size"]), steps)
        total = math.ceil(steps / batch)
        calls = [0]

        def forward(inputs: torch.Tensor) -> torch.Tensor:
            # captum calls this once per internal batch: the place to report and to stop.
            budget.check(calls[0], total)
            out = self.model(inputs)
            calls[0] += 1
            progress(min(calls[0], total), total, "Integrated Gradients")
            return out

        inp = self.batch(x)
        # Zero in normalised units is the dataset's mean colour: "no information" for the model.
        attr, delta = IntegratedGradients(forward).attribute(
            inp, baselines=torch.zeros_like(inp), target=target, n_steps=steps,
            method="gausslegendre", internal_batch_size=batch,
            return_convergence_delta=True)
        self.extras["convergence_delta"] = float(delta.abs().sum())
        return attr[0].detach().cpu().numpy()
