"""Can this explanation be trusted? Two checks shown with every explanation.

* Sanity check (Adebayo et al., 2018): the same method on a copy of the model with randomised
  weights. A map that depends on what the model learnt must change; the similarity shown is the
  Spearman rank correlation of the two maps' absolute attributions (1 = same ranking).
* Deletion curve (Petsiuk et al., 2018): the target probability as the most-attributed pixels
  (or features) are removed, against removing them in random order; a faithful map makes it
  fall faster, so its area under the curve is smaller than the random one's.

A constant or near-constant map (from any method, the randomised copy's included) ranks nothing:
both checks are then *undefined*, never passed, and ``defined_mean`` leaves them out of a mean.

A removed feature is set to its training mean. A removed pixel is filled in from the pixels
that remain (push-pull inpainting, as ROAD does with noisy linear imputation): painting it a
constant colour instead would leave the removed region's outline behind, and on ``shapes`` a
flat silhouette is still a perfectly recognisable shape, while scattered constant pixels are a
noise the model never saw; either would make the curve measure the fill, not the map.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.progress import ProgressFn, no_progress

if TYPE_CHECKING:
    import torch
    from torch import nn

    from core.explain.base import Explainer

SANITY_THRESHOLD = 0.5  # above this rank correlation, the map barely depends on the weights
# A map whose spread is below this share of its largest |value| is flat: float noise, or one
# LIME weight spread over one superpixel covering the image, carries no ranking.
FLAT_RTOL = 1e-3
DELETION_STEPS = 20
RANDOM_REPEATS = 3


def saliency(attributions: np.ndarray) -> np.ndarray:
    """|attribution| per pixel (summed over channels) or per feature."""
    attributions = np.asarray(attributions)
    return np.abs(attributions).sum(0) if attributions.ndim == 3 else np.abs(attributions)


def signed_map(attributions: np.ndarray) -> np.ndarray:
    """Attribution per pixel (summed over channels) or per feature, with its sign."""
    attributions = np.asarray(attributions)
    return attributions.sum(0) if attributions.ndim == 3 else attributions


def is_flat(values: np.ndarray) -> bool:
    """Whether a map is constant or near-constant (or not finite): it ranks no position above
    another, so it explains nothing and no check can be computed on it."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        return True
    scale = float(np.abs(values).max())
    return scale == 0.0 or float(np.ptp(values)) <= FLAT_RTOL * scale


def defined_mean(values: Iterable[float | None]) -> float | None:
    """The mean of the defined values (None = an undefined check is left out); None if none."""
    kept = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def rank_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; 0 when either is constant (nothing ranked)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class SanityCheck:
    # Spearman rank correlation of |attribution|, trained vs randomised model; None when either
    # map is flat (it ranks nothing, so there is nothing to compare): the check is undefined
    similarity: float | None
    threshold: float = SANITY_THRESHOLD
    metric: str = "Spearman rank correlation of |attribution|"
    reason: str = ""  # why it is undefined

    @property
    def verdict(self) -> str:
        """``passed``, ``failed`` or ``undefined`` (never passed when nothing was compared)."""
        if self.similarity is None:
            return "undefined"
        return "passed" if self.similarity < self.threshold else "failed"

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "verdict": self.verdict}


def verdict_of(sanity: dict[str, Any]) -> str:
    """The verdict of a stored sanity dict (results cached before ``verdict`` existed too)."""
    if not sanity:
        return "undefined"
    if sanity.get("similarity") is None:
        return "undefined"
    return sanity.get("verdict") or ("passed" if sanity.get("passed") else "failed")


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (its own seed; the global RNG is left
    as it was). BatchNorm layers get fresh statistics too."""
    import torch

    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return clone.eval()


def sanity_check(explainer: Explainer, x: torch.Tensor, target: int,
                 attributions: np.ndarray, seed: int = 0,
                 progress: ProgressFn | None = None) -> tuple[SanityCheck, np.ndarray]:
    """The same method on a randomised copy of the model; returns the check and its map."""
    random_explainer = explainer.with_model(randomized_copy(explainer.model, seed))
    random_attr = random_explainer.explain(x, target, progress or no_progress)
    trained, randomised = saliency(attributions), saliency(random_attr)
    if is_flat(trained):
        return SanityCheck(None, reason="the map is flat: it ranks no position above "
                                        "another"), random_attr
    if is_flat(randomised):
        # A flat randomised map is not a different map: it ranks nothing, so the check
        # cannot tell whether this map depends on what the model learnt.
        return SanityCheck(None, reason="the randomised model's map is flat: nothing to "
                                        "compare with"), random_attr
    return SanityCheck(rank_similarity(trained, randomised)), random_attr


@dataclass
class DeletionCurve:
    fractions: np.ndarray  # share of pixels (features) removed, 0..1
    probs: np.ndarray  # target probability, most-attributed removed first
    random_probs: np.ndarray  # the same, removed in random order (mean over repeats)
    auc: float
    random_auc: float

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"deletion_fractions": self.fractions, "deletion_probs": self.probs,
                "deletion_random_probs": self.random_probs}


def deletion_curve(model: nn.Module, x: torch.Tensor, ranking: np.ndarray, target: int,
                   steps: int = DELETION_STEPS, random_repeats: int = RANDOM_REPEATS,
                   seed: int = 0, batch_size: int = 32) -> DeletionCurve:
    """Target probability as the positions of ``ranking`` (H, W) or (F,) are removed from
    ``x`` (C, H, W) or (F,), highest first, against random orders."""
    positions = int(np.prod(np.shape(ranking)))
    fractions = np.linspace(0.0, 1.0, steps + 1)
    order = np.argsort(-np.ravel(ranking), kind="stable")
    probs = _curve(model, x, order, fractions, target, batch_size)
    rng = np.random.default_rng(seed)
    randoms = [_curve(model, x, rng.permutation(positions), fractions, target, batch_size)
               for _ in range(random_repeats)]
    random_probs = np.mean(randoms, axis=0)
    return DeletionCurve(fractions, probs, random_probs, float(np.trapezoid(probs, fractions)),
                         float(np.trapezoid(random_probs, fractions)))


def _curve(model: nn.Module, x: torch.Tensor, order: np.ndarray, fractions: np.ndarray,
           target: int, batch_size: int) -> np.ndarray:
    import torch

    device = next(model.parameters()).device
    positions = order.size
    counts = np.rint(fractions * positions).astype(int)
    out = []
    with torch.no_grad():
        for start in range(0, len(counts), batch_size):
            removed = torch.zeros(len(counts[start:start + batch_size]), positions,
                                  dtype=torch.bool)
            for j, k in enumerate(counts[start:start + batch_size]):
                removed[j, torch.from_numpy(order[:k].copy())] = True
            batch = _remove(x.detach().cpu(), removed)
            logits = model(batch.to(device)).float()
            out.append(torch.softmax(logits, dim=1)[:, target].cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def _remove(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Copies of ``x`` with the positions flagged in ``removed`` (B, positions) taken out."""
    if x.ndim == 1:  # a table row: removed features take their mean (zero once standardised)
        return x.expand(len(removed), -1).masked_fill(removed, 0.0)
    known = (~removed).float().view(len(removed), 1, *x.shape[-2:])
    return inpaint(x.expand(len(removed), -1, -1, -1), known)


def inpaint(images: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Push-pull inpainting: the unknown pixels (``known`` = 0) of (B, C, H, W) ``images`` are
    filled from a pyramid of averages of the known ones; known pixels are kept exactly. An image
    with no known pixel comes back as zeros (the dataset's mean colour)."""
    import torch.nn.functional as F

    def fill(values, weight):
        # values are premultiplied by weight (the share of known pixels under each cell)
        if min(values.shape[-2:]) <= 1:
            total = weight.sum((2, 3), keepdim=True)
            mean = values.sum((2, 3), keepdim=True) / total.clamp_min(1e-6)
            return mean.expand_as(values)
        coarse = fill(F.avg_pool2d(values, 2, ceil_mode=True),
                      F.avg_pool2d(weight, 2, ceil_mode=True))
        up = F.interpolate(coarse, size=values.shape[-2:], mode="bilinear", align_corners=False)
        return values + (1.0 - weight) * up  # weight * (values / weight) + (1 - weight) * up

    return fill(images * known, known)
