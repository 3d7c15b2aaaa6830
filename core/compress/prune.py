"""Pruning, one round at a time: structured with Torch-Pruning, unstructured with
``torch.nn.utils.prune`` (imports torch; ``torch_pruning`` is imported where it is used).

**Structured** pruning removes whole channels with everything that depends on them (the next
layer's inputs, batch norms, both sides of a residual addition): Torch-Pruning's
``DependencyGraph`` finds those groups, an importance criterion (L1/L2 magnitude, BN scale,
first-order Taylor) ranks them, and the classifier head is ignored so its outputs (the classes)
stay. The target is a fraction of every layer's channels, or a fraction of the parameters or
MACs (then the pruner steps in small increments until the count is under budget, as Torch-
Pruning's own benchmarks do for a speed-up target).

**Unstructured** pruning zeroes the smallest weights (global or per-layer L1 magnitude) and is
made permanent at once (``prune.remove``): the network keeps its dense shapes, so it exports and
loads like any other; :func:`masks` lets fine-tuning keep the zeros at zero. It shrinks a
compressed file, not the time a dense runtime takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from core.config import PruneConfig
from core.errors import InvalidConfig

log = logging.getLogger(__name__)

BUDGET_STEPS = 50  # steps of the channel ratio towards a params / MACs budget
MAX_RATIO = 0.95  # never remove more than this share of a layer's channels
ROUND_TO = 8

Masks = dict[str, torch.Tensor]


def example_input(info: Any, image_size: int | None, device: torch.device | str = "cpu"
                  ) -> torch.Tensor:
    """One input of the right shape, for tracing the dependency graph and counting MACs."""
    if info.modality == "tabular":
        return torch.randn(1, len(info.feature_names), device=device)
    size = image_size or info.image_size
    return torch.randn(1, info.channels, size, size, device=device)


def count(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Parameters, non-zero parameters and multiply-accumulates of one forward pass."""
    import torch_pruning as tp

    was_training = model.training
    macs, params = tp.utils.count_ops_and_params(model.eval(), example)
    model.train(was_training)
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return {"params": int(params), "nonzero_params": nonzero, "macs": int(macs)}


def _measure(model: nn.Module, example: torch.Tensor, what: str) -> int:
    """Parameters are summed directly (cheap); MACs need a traced forward pass."""
    if what == "params":
        return sum(p.numel() for p in model.parameters())
    return count(model, example)[what]


def prune_round(model: nn.Module, settings: PruneConfig, round_: int, example: torch.Tensor,
                base: dict[str, int], gradients: Callable[[nn.Module], None] | None = None
                ) -> None:
    """Round ``round_`` (1-based) of ``settings.steps``, in place: afterwards
    ``amount * round_ / steps`` of the original (``base`` counts) is removed.

    ``gradients(model)`` accumulates ``.grad`` on a few training batches (Taylor importance).
    """
    goal = settings.amount * round_ / settings.steps
    if settings.method == "unstructured":
        prune_unstructured(model, goal, settings.scope)
        return
    before = count(model, example)
    if settings.importance == "taylor":
        if gradients is None:
            raise InvalidConfig("Taylor importance needs training batches for its gradients.")
        model.zero_grad(set_to_none=True)
        gradients(model)
    if settings.target == "channels":
        done = settings.amount * (round_ - 1) / settings.steps
        ratio = 1 - (1 - goal) / (1 - done)  # of the channels still there
        pruner = _pruner(model, example, settings.importance, ratio, steps=1)
        pruner.step()
    else:
        budget = (1 - goal) * base[settings.target]
        # Parameters and MACs of a conv shrink with the square of its kept channels: the first
        # step jumps most of the way there (a little short), small steps take it the rest.
        now = _measure(model, example, settings.target)
        start = 0.8 * (1 - min(1.0, budget / now) ** 0.5)
        pruner = _pruner(model, example, settings.importance, MAX_RATIO, steps=BUDGET_STEPS,
                         schedule=_jump_then_linear(start))
        while _measure(model, example, settings.target) > budget \
                and pruner.current_step < BUDGET_STEPS:
            pruner.step()
    model.zero_grad(set_to_none=True)
    after = count(model, example)
    if after["params"] >= before["params"]:
        hint = " (bn ranks channels by their batch norm's scale: this model has none)" \
            if settings.importance == "bn" else ""
        raise InvalidConfig(f"Nothing could be pruned with importance {settings.importance!r}"
                            f"{hint}; try --importance l1.")
    log.info("Pruning round %d/%d: params %d -> %d, MACs %d -> %d", round_, settings.steps,
             before["params"], after["params"], before["macs"], after["macs"])


def _pruner(model: nn.Module, example: torch.Tensor, importance: str, ratio: float, steps: int,
            schedule: Callable[[float, int], list[float]] | None = None):
    import torch_pruning as tp

    from core.models.surgery import classifier_head

    extra = {"iterative_pruning_ratio_scheduler": schedule} if schedule else {}
    # round_to: channel counts stay multiples of 8, which CPU kernels (SIMD) run fastest.
    return tp.pruner.BasePruner(
        model, example, importance=IMPORTANCES[importance](), pruning_ratio=ratio,
        iterative_steps=steps, ignored_layers=[classifier_head(model)], round_to=ROUND_TO,
        **extra)


def _jump_then_linear(start: float) -> Callable[[float, int], list[float]]:
    """A Torch-Pruning ratio schedule: ``start`` at step 1, then even steps up to the ratio."""
    def schedule(ratio: float, steps: int) -> list[float]:
        rest = [start + (ratio - start) * i / (steps - 1) for i in range(1, steps)]
        return [0.0, start, *rest]
    return schedule


def _magnitude(p: int) -> Callable[[], Any]:
    def build() -> Any:
        import torch_pruning as tp

        return tp.importance.MagnitudeImportance(p=p)
    return build


def _bn() -> Any:
    import torch_pruning as tp

    return tp.importance.BNScaleImportance()


def _taylor() -> Any:
    import torch_pruning as tp

    return tp.importance.TaylorImportance()


# The importance criteria by the names the CLI and the page offer (config.IMPORTANCES).
IMPORTANCES: dict[str, Callable[[], Any]] = {
    "l1": _magnitude(1), "l2": _magnitude(2), "bn": _bn, "taylor": _taylor}


# -- unstructured --------------------------------------------------------------------------------


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convolutions and linear layers, the classifier head excepted (its weights stay whole)."""
    from core.models.surgery import classifier_head

    head = classifier_head(model)
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m is not head]


def prune_unstructured(model: nn.Module, amount: float, scope: str = "global") -> None:
    """Zero ``amount`` of the weights with the smallest magnitude, permanently (plain tensors
    with zeros, no masks left on the modules)."""
    from torch.nn.utils import prune

    targets = [(m, "weight") for _, m in prunable_layers(model)]
    if not targets:
        raise InvalidConfig("This model has no convolution or linear layer to prune besides "
                            "its head.")
    if scope == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for module, name in targets:
            prune.l1_unstructured(module, name, amount=amount)
    for module, name in targets:
        prune.remove(module, name)


def masks(model: nn.Module) -> Masks:
    """Where each prunable weight is non-zero: fine-tuning multiplies by it after every step."""
    return {name: module.weight.detach() != 0 for name, module in prunable_layers(model)}


@torch.no_grad()
def apply_masks(model: nn.Module, found: Masks) -> None:
    modules = dict(model.named_modules())
    for name, mask in found.items():
        modules[name].weight.mul_(mask)


def sparsity(model: nn.Module) -> dict[str, float]:
    """Share of zero weights: over the prunable layers, and over every parameter."""
    layers = [m.weight for _, m in prunable_layers(model)]
    return {"prunable": _zeros(layers), "overall": _zeros(model.parameters())}


def _zeros(tensors: Iterable[torch.Tensor]) -> float:
    total = zeros = 0
    for t in tensors:
        total += t.numel()
        zeros += int((t == 0).sum())
    return round(zeros / total, 6) if total else 0.0
