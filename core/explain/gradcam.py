"""Grad-CAM (captum ``LayerGradCam``) on the model's last convolutional layer, found by itself
(its activation: see ``gradcam_layer``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.explain.base import Budget, Explainer, gradcam_layer
from core.explain.registry import register_explainer
from core.progress import ProgressFn

if TYPE_CHECKING:
    import torch


@register_explainer(
    "gradcam", modality="image", display_name="Grad-CAM", order=1,
    description="Class activation map of the last convolutional layer, weighted by its "
                "gradients (one forward and one partial backward pass).")
class GradCam(Explainer):
    defaults = {**Explainer.defaults}
    limits = {**Explainer.limits}

    def _attribute(self, x: torch.Tensor, target: int, budget: Budget,
                   progress: ProgressFn) -> np.ndarray:
        from captum.attr import LayerAttribution, LayerGradCam

        progress(0, 1, "Grad-CAM")
        inputs = self.batch(x)
        key = tuple(inputs.shape)
        if getattr(self, "_layer", (None, None))[0] != key:  # found once per input shape
            self._layer = key, gradcam_layer(self.model, inputs)
        name = self._layer[1]
        layer = dict(self.model.named_modules())[name]
        cam = LayerGradCam(self.model, layer).attribute(inputs, target=target,
                                                        relu_attributions=True)
        # The layer's map is coarser than the input: bilinear upsampling, as in the paper.
        cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        self.extras["layer"] = name
        progress(1, 1, "Grad-CAM")
        return cam[0].detach().cpu().numpy()
