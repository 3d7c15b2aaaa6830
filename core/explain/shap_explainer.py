"""SHAP for images: ``shap.GradientExplainer`` (expected gradients) for the target class only,
with a background drawn from the training split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from core.explain.base import Budget, Explainer, target_output, training_sample
from core.explain.registry import register_explainer
from core.progress import ProgressFn

if TYPE_CHECKING:
    import torch


def expected_gradients(model, background: torch.Tensor, x: torch.Tensor, nsamples: int,
                       batch_size: int, seed: int, budget: Budget, progress: ProgressFn,
                       what: str) -> np.ndarray:
    """shap's GradientExplainer on a single-output ``model``, in chunks of ``batch_size``
    samples so progress is reported and the budget checked between them.

    Each chunk is an independent Monte Carlo estimate over its own samples (its own seed); their
    weighted mean is the estimate over all ``nsamples``, as one call would give.
    """
    import shap

    explainer = shap.GradientExplainer(model, background, batch_size=batch_size)
    total, done, acc = int(nsamples), 0, None
    progress(0, total, what)
    while done < total:
        budget.check(done, total)
        chunk = min(batch_size, total - done)
        values = explainer.shap_values(x, nsamples=chunk, rseed=seed + done)
        values = np.asarray(values, dtype=np.float64).reshape(x.shape)  # one output only
        acc = values * chunk if acc is None else acc + values * chunk
        done += chunk
        progress(done, total, what)
    return (acc / total).astype(np.float32)


def shap_params(nsamples: tuple[int, int], background: tuple[int, int], batch_size: tuple[int, int]
                ) -> tuple[dict[str, Any], dict[str, tuple[float, float]]]:
    """The ``defaults`` and ``limits`` of a SHAP method (the parameters ``ShapExplainer`` reads):
    each argument is (its default, the most allowed); the least is 1, the seed defaults to 0."""
    given = {"nsamples": nsamples, "background": background, "batch_size": batch_size}
    defaults = {**Explainer.defaults, **{k: v[0] for k, v in given.items()}, "seed": 0}
    limits = {**Explainer.limits, **{k: (1, v[1]) for k, v in given.items()},
              "seed": (0, 2**31 - 1)}
    return defaults, limits


class ShapExplainer(Explainer):
    """What the SHAP methods share: a background of training samples (``background`` of them,
    drawn once with ``seed``) and expected gradients with the method's parameters."""

    def _background(self) -> torch.Tensor:
        cached = getattr(self, "_bg", None)
        if cached is None:
            cached = self._bg = training_sample(self.loaded, self.params["background"],
                                                self.params["seed"])
        return cached

    def _expected_gradients(self, model, background: torch.Tensor, x: torch.Tensor,
                            budget: Budget, progress: ProgressFn) -> np.ndarray:
        return expected_gradients(model, background, x, self.params["nsamples"],
                                  self.params["batch_size"], self.params["seed"], budget,
                                  progress, "SHAP")


@register_explainer(
    "shap", modality="image", display_name="SHAP", order=3,
    description="Expected gradients (shap.GradientExplainer) against a background sample of the "
                "training split, for the target class only.")
class GradientShap(ShapExplainer):
    defaults, limits = shap_params(nsamples=(64, 4096), background=(32, 1024),
                                   batch_size=(32, 1024))

    def _attribute(self, x: torch.Tensor, target: int, budget: Budget,
                   progress: ProgressFn) -> np.ndarray:
        background = self._background().to(self.device)
        # Wrapping the model so its only output is the target logit: shap then computes the
        # gradients of that one output, not of every class.
        model = target_output(self.model, target)
        values = self._expected_gradients(model, background, self.batch(x), budget, progress)
        self.extras["outputs_explained"] = 1
        return values[0]
