"""LIME for images: ``lime_image`` on superpixels that fit the image (SLIC when it is healthy,
else a fallback: see ``core.explain.segmentation``), predictions batched."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from core.explain.base import Budget, Explainer, to_uint8_image
from core.explain.registry import register_explainer
from core.explain.segmentation import check_method, segment
from core.progress import ProgressFn

if TYPE_CHECKING:
    import torch


@register_explainer(
    "lime", modality="image", display_name="LIME", order=4,
    description="A local linear model over superpixels switched on and off (num_samples "
                "perturbed images, predicted in batches); the superpixels are checked and "
                "replaced when they degenerate.")
class LimeImage(Explainer):
    defaults = {**Explainer.defaults, "num_samples": 256, "n_segments": 50, "compactness": 10.0,
                "batch_size": 64, "seed": 0, "segmentation": "auto"}
    limits = {**Explainer.limits, "num_samples": (10, 10000), "n_segments": (2, 1000),
              "compactness": (0.01, 1000.0), "batch_size": (1, 1024), "seed": (0, 2**31 - 1)}

    def __init__(self, loaded_run: Any, **params: Any):
        super().__init__(loaded_run, **params)
        check_method(str(self.params["segmentation"]))  # refused before any work starts

    def _attribute(self, x: torch.Tensor, target: int, budget: Budget,
                   progress: ProgressFn) -> np.ndarray:
        from lime import lime_image

        info = self.loaded.info
        image = to_uint8_image(x, info.mean, info.std)
        rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
        total, seed = int(self.params["num_samples"]), int(self.params["seed"])
        segments, used = segment(rgb, int(self.params["n_segments"]),
                                 float(self.params["compactness"]),
                                 str(self.params["segmentation"]))
        classify = self._classifier(info.channels, total, budget, progress)
        progress(0, total, "LIME")
        # A superpixel switched off takes the dataset's mean colour (zero in normalised units,
        # the baseline of IG and of the deletion curve); lime's default, the superpixel's own
        # mean, changes nothing when superpixels are single pixels (digits are 8x8).
        hide = tuple(int(round(255 * m)) for m in info.mean) * (3 if info.channels == 1 else 1)
        explanation = lime_image.LimeImageExplainer(random_state=seed).explain_instance(
            rgb, classify, labels=(target,), top_labels=None, hide_color=hide, num_samples=total,
            batch_size=int(self.params["batch_size"]), segmentation_fn=lambda _: segments,
            random_seed=seed)
        weights = np.zeros(int(segments.max()) + 1, dtype=np.float32)
        for index, weight in explanation.local_exp[target]:
            weights[index] = weight
        # The segment map travels with the result (an array: stored in the npz, not the JSON)
        # so the page can draw the superpixels LIME switched on and off.
        self.extras.update(segments=int(segments.max()) + 1, segmentation=used,
                           segment_map=segments.astype(np.int32),
                           score=float(explanation.score))
        return weights[segments][None]

    def _classifier(self, channels: int, total: int, budget: Budget, progress: ProgressFn):
        import torch

        preprocess = self.loaded.preprocess
        done = [0]

        @torch.no_grad()
        def classify(images: np.ndarray) -> np.ndarray:
            budget.check(done[0], total)
            batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
            if channels == 1:
                batch = batch[..., 0]  # lime works in RGB; the model sees one channel
            logits = self.model(preprocess.pixels(batch).to(self.device))
            done[0] += len(images)
            progress(min(done[0], total), total, "LIME")
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

        return classify
