"""An ensemble as ONE network: its members as submodules and its fitted combiner as tensor ops.

``EnsembleGraph(x)`` takes one preprocessed batch at the ensemble's input size
(:func:`input_size`), resizes it inside the graph for each member of another size (bilinear,
antialiased: the filter Pillow applies in the shared preprocessing), runs each member, and
combines their probabilities as ``core.analyze.combiners.combine`` does, with the fitted weights
or logistic-regression coefficients as buffers. It returns the log of the combined
probabilities: a softmax of them gives the probabilities back, so every consumer of "logits"
(explain, export, the serving runtime) works on it unchanged, and the ONNX export is one graph.

The combination is computed in log space (``logsumexp`` of the members' log-softmax plus the
log weights) rather than as a log of a sum: the outputs stay finite for a class every member
rules out, and an int8 graph, whose quantized sums round small probabilities to 0, does not
produce ``-inf``.

Members of the input size (and tables) see exactly the tensor each sees alone, so the graph
equals the Python ensemble on them; a member of another size sees the shared input resized in
the graph rather than the original file resized by Pillow (``core.deploy.ensemble_export``
measures the difference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from core.analyze.combiners import EPS, check_method

TINY = 1e-30  # floor of a probability before its log: finite in float32 (and in an int8 graph)


def input_size(sizes: Sequence[int | None], native: int | None = None) -> int | None:
    """The ensemble's input size (None for tables): the members' size when they share one;
    else the largest, unless the dataset's images are all ``native`` pixels (a built-in):
    then ``native`` clamped to the members' range, so members larger than the images are
    upscaled from the images' own pixels as Pillow would, not from an upscaled copy."""
    if not sizes or any(s is None for s in sizes):
        return None
    if len(set(sizes)) == 1 or not native:
        return max(sizes)  # type: ignore[type-var]
    return min(max(native, min(sizes)), max(sizes))  # type: ignore[type-var]


def _logsumexp(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.logsumexp(torch.stack(list(terms)), dim=0)


class Combiner(nn.Module):
    """``combine`` of ``core.analyze.combiners`` on the members' log-probabilities, in log
    space: returns the log of the combined (N, C) probabilities."""

    def __init__(self, combiner: dict[str, Any], n_members: int, n_classes: int):
        super().__init__()
        self.method = check_method(combiner["method"])
        self.n_members = n_members
        weights = torch.tensor(combiner["weights"], dtype=torch.float64)
        self.register_buffer("log_weights", torch.log(weights.clamp(min=TINY)).float())
        self.register_buffer("classes", torch.arange(n_classes))
        if self.method == "stacking":
            params = combiner["stacking"]
            self.register_buffer("coef", torch.tensor(params["coef"], dtype=torch.float32))
            self.register_buffer("intercept", torch.tensor(params["intercept"],
                                                           dtype=torch.float32))
            # The logistic regression's outputs go to their label columns (fewer than C when a
            # class is absent from val: those get probability EPS, as close to 0 as a log goes).
            outputs = params["classes"]
            place = torch.zeros(len(outputs), n_classes)
            place[torch.arange(len(outputs)), torch.tensor(outputs)] = 1.0
            self.register_buffer("place", place)
            self.register_buffer("absent", (1.0 - place.sum(0)) * math.log(EPS))

    def forward(self, log_probs: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.method == "stacking":
            return self._stacking(log_probs)
        if self.method == "hard":
            return self._hard(log_probs)
        # soft (uniform weights) and weighted: log sum_k w_k p_k, renormalised as combine does
        out = _logsumexp([lp + lw for lp, lw in zip(log_probs, self.log_weights, strict=True)])
        return out - torch.logsumexp(out, dim=1, keepdim=True)

    def _hard(self, log_probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``combiners.hard_vote``: (1 - lam) votes / M + lam * soft mean, ``lam = 1/(2M+1)``."""
        m = self.n_members
        lam = 1.0 / (2 * m + 1)
        # One vote per member for its argmax (an equality with arange: plain ONNX ops).
        votes = sum((lp.argmax(dim=1, keepdim=True) == self.classes).float() for lp in log_probs)
        voted = torch.log(torch.clamp(votes * ((1 - lam) / m), min=TINY))
        soft = _logsumexp(log_probs) + math.log(lam / m)
        return torch.logaddexp(voted, soft)

    def _stacking(self, log_probs: Sequence[torch.Tensor]) -> torch.Tensor:
        z = torch.cat([lp.exp() for lp in log_probs], dim=1) @ self.coef.T + self.intercept
        if self.place.shape[0] == 2:  # binary: one logit, for the second class
            out = torch.cat([F.logsigmoid(-z[:, :1]), F.logsigmoid(z[:, :1])], dim=1)
        else:
            out = torch.log_softmax(z, dim=1)
        return out @ self.place + self.absent


class EnsembleGraph(nn.Module):
    """The members (each at its own input size) and the combiner, as one module."""

    def __init__(self, members: Sequence[nn.Module], sizes: Sequence[int | None],
                 combiner: dict[str, Any], n_classes: int, size: int | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.sizes = list(sizes)
        self.input_size = size if size is not None else input_size(sizes)
        self.combiner = Combiner(combiner, len(members), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = [torch.log_softmax(member(self._resized(x, size)).float(), dim=1)
                     for member, size in zip(self.members, self.sizes, strict=True)]
        return self.combiner(log_probs)

    def _resized(self, x: torch.Tensor, size: int | None) -> torch.Tensor:
        if size is None or size == self.input_size:
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=size < (self.input_size or 0))
