"""Explanations of table rows: SHAP (expected gradients of the target probability, against a
background of training rows) and LIME tabular (on the rows in feature units)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.explain.base import Budget, Explainer, rows_to_raw, target_output, training_sample
from core.explain.registry import register_explainer
from core.explain.shap_explainer import ShapExplainer, shap_params
from core.progress import ProgressFn

if TYPE_CHECKING:
    import torch


@register_explainer(
    "shap", modality="tabular", display_name="SHAP", order=1,
    description="SHAP values of the target class probability (expected gradients against a "
                "background of training rows): they add up to the probability minus its mean.")
class TabularShap(ShapExplainer):
    defaults, limits = shap_params(nsamples=(256, 20000), background=(100, 5000),
                                   batch_size=(256, 4096))

    def _attribute(self, x: torch.Tensor, target: int, budget: Budget,
                   progress: ProgressFn) -> np.ndarray:
        values = self.explain_rows(x[None], target, budget, progress)
        return values[0]

    def explain_rows(self, rows: torch.Tensor, target: int, budget: Budget,
                     progress: ProgressFn) -> np.ndarray:
        """SHAP values (N, F) of several preprocessed rows at once (the global summary)."""
        import torch

        background = self._background().to(self.device)
        model = target_output(self.model, target, softmax=True)
        with torch.no_grad():
            base = float(model(background).mean())
            outputs = model(rows.to(self.device))[:, 0].cpu().numpy()
        values = self._expected_gradients(model, background, rows.to(self.device), budget,
                                          progress)
        self.extras.update(base_value=base, output=float(outputs[0]),
                           outputs=outputs.tolist(), outputs_explained=1)
        return values


@register_explainer(
    "lime", modality="tabular", display_name="LIME", order=2,
    description="A local linear model fitted on perturbed rows around this one, in feature units "
                "(quartile-discretised, as lime_tabular does by default).")
class TabularLime(Explainer):
    defaults = {**Explainer.defaults, "num_samples": 1000, "num_features": 10, "seed": 0}
    limits = {**Explainer.limits, "num_samples": (10, 100000), "num_features": (1, 1000),
              "seed": (0, 2**31 - 1)}

    def _attribute(self, x: torch.Tensor, target: int, budget: Budget,
                   progress: ProgressFn) -> np.ndarray:
        import torch
        from lime.lime_tabular import LimeTabularExplainer

        info, seed = self.loaded.info, int(self.params["seed"])
        train = rows_to_raw(training_sample(self.loaded, 5000, seed).cpu().numpy(),
                            info.mean, info.std)
        row = rows_to_raw(x.cpu().numpy()[None], info.mean, info.std)[0]
        total = int(self.params["num_samples"])
        preprocess = self.loaded.preprocess

        @torch.no_grad()
        def predict(raw: np.ndarray) -> np.ndarray:
            budget.check(0, total)
            logits = self.model(preprocess.rows(raw).to(self.device))
            progress(total, total, "LIME")
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

        progress(0, total, "LIME")
        explainer = LimeTabularExplainer(
            train, feature_names=list(info.feature_names), class_names=list(info.classes),
            discretize_continuous=True, random_state=seed)
        explanation = explainer.explain_instance(
            row, predict, labels=(target,), num_features=min(int(self.params["num_features"]),
                                                             len(row)), num_samples=total)
        weights = np.zeros(len(row), dtype=np.float32)
        conditions = [""] * len(row)  # as_list follows as_map's order: the feature's rule
        for (index, weight), (condition, _) in zip(explanation.as_map()[target],
                                                   explanation.as_list(label=target), strict=True):
            weights[index], conditions[index] = weight, condition
        self.extras.update(conditions=conditions,
                           intercept=float(explanation.intercept[target]),
                           score=float(explanation.score))
        return weights
