"""Weights: torchvision's pretrained files from the local torch cache, and ``--weights FILE``.

Nothing here downloads: a missing weights file is a :class:`~core.errors.WeightsNotFound` that says
where to put it. Files are loaded with ``weights_only`` (``core.checkpoint.load_checkpoint``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.checkpoint import load_checkpoint, model_state
from core.errors import InvalidConfig, WeightsNotFound
from core.models.registry import get_spec
from core.models.surgery import adapt_conv_weight, first_conv_name, has_conv, head_parameter_names

logger = logging.getLogger(__name__)


def pretrained_weights_path(name: str) -> Path:
    """Where the torchvision weights file for ``name`` must be (the torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_url(name).rsplit("/", 1)[-1]


def weights_url(name: str) -> str:
    """Where torchvision publishes the weights of ``name`` (shown to the user, never fetched)."""
    from torchvision.models import get_model_weights

    if not get_spec(name).pretrained_available:
        raise InvalidConfig(f"Model {name!r} has no pretrained weights.")
    return get_model_weights(name).DEFAULT.url


def load_pretrained(model: nn.Module, name: str) -> None:
    """Load torchvision's ImageNet weights of ``name`` (strictly) from the local torch cache."""
    path = pretrained_weights_path(name)
    if not path.is_file():
        raise WeightsNotFound(
            f"Pretrained weights for {name} are not on this machine, and nothing is downloaded. "
            f"Put the file at {path} (it comes from {weights_url(name)}), set TORCH_HOME to a "
            "folder whose hub/checkpoints/ holds it, or pass --weights FILE instead."
        )
    state = _tensors(model_state(load_checkpoint(path)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsNotFound(
            f"{path} is not the torchvision {name} weights file: {str(exc)[:300]}"
        ) from None
    logger.info("Loaded pretrained %s weights from %s", name, path)


def _tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_weights(model: nn.Module, path: Path, name: str = "") -> dict[str, int]:
    """Load every tensor of ``path`` that fits ``model`` by name and shape; return the counts.

    ``path`` is a torchvision state dict or another run's checkpoint. A head of another class
    count is skipped (the model keeps its fresh one); a first conv of another channel count is
    adapted with :func:`~core.models.surgery.adapt_conv_weight`. Raises ``WeightsNotFound`` when
    fewer than half of the backbone's parameter tensors fit.
    """
    name = name or type(model).__name__
    source = _tensors(model_state(load_checkpoint(path)))
    target = model.state_dict()
    first_conv = first_conv_name(model) + ".weight" if has_conv(model) else None
    matched: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        want = target.get(key)
        if want is None:
            continue
        if want.shape == value.shape:
            matched[key] = value
        elif key == first_conv and _same_but_channels(want, value):
            matched[key] = adapt_conv_weight(value.float(), want.shape[1]).to(want.dtype)
    head = head_parameter_names(model)
    backbone = [n for n, _ in model.named_parameters() if n not in head]
    fitted = sum(n in matched for n in backbone)
    if fitted < len(backbone) / 2:
        raise WeightsNotFound(
            f"{path.name} does not fit model {name}: only {fitted} of its {len(backbone)} "
            "backbone parameter tensors match by name and shape. Was it saved from another model?"
        )
    model.load_state_dict(matched, strict=False)
    counts = {"loaded": len(matched), "skipped": len(source) - len(matched)}
    logger.info(
        "Loaded %d tensors from %s into %s; skipped %d (head kept fresh: %s).",
        counts["loaded"], path.name, name, counts["skipped"], not head <= matched.keys(),
    )
    return counts


def _same_but_channels(want: torch.Tensor, have: torch.Tensor) -> bool:
    return (
        want.dim() == have.dim() == 4
        and want.shape[0] == have.shape[0]
        and want.shape[2:] == have.shape[2:]
    )
