"""Heads, freezing and module surgery on built models (imports torch)."""

from __future__ import annotations

import torch
from torch import nn

from core.errors import InvalidConfig


def classifier_head(model: nn.Module) -> nn.Linear:
    """The classification head: the last ``nn.Linear`` of every registered model."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InvalidConfig(f"{type(model).__name__} has no Linear classification head.")
    return linears[-1]


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in ``model.named_parameters()``) of the head's parameters."""
    head = classifier_head(model)
    prefix = next(n for n, m in model.named_modules() if m is head)
    return {f"{prefix}.{n}" for n, _ in head.named_parameters()}


def freeze_backbone(model: nn.Module) -> None:
    """Train only the head. BatchNorm running statistics still update in ``train()`` mode."""
    head = head_parameter_names(model)
    for pname, param in model.named_parameters():
        param.requires_grad = pname in head


def replace_head(model: nn.Module, num_classes: int) -> None:
    """A fresh classification head with ``num_classes`` outputs."""
    head = classifier_head(model)
    set_module(model, head, nn.Linear(head.in_features, num_classes))


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def first_conv_name(model: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def set_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` where ``old`` sits in ``model``."""
    path = next(n for n, m in model.named_modules() if m is old)
    parent_name, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def replace_first_conv(model: nn.Module, channels: int, keep_weights: bool) -> None:
    """The first conv takes ``channels`` inputs; its kernel is adapted when ``keep_weights``."""
    old = model.get_submodule(first_conv_name(model))
    new = nn.Conv2d(
        channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        old.bias is not None,
        old.padding_mode,
    )
    if keep_weights:
        with torch.no_grad():
            new.weight.copy_(adapt_conv_weight(old.weight, channels))
            if old.bias is not None:
                new.bias.copy_(old.bias)
    set_module(model, old, new)


def adapt_conv_weight(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """Map a conv kernel (out, c_in, k, k) to ``channels`` inputs: mean over c_in, repeated.

    Scaled by c_in / channels so that an image whose channels are all equal (grey in RGB)
    produces the same activations as before, which keeps the next BatchNorm's statistics valid.
    """
    mean = weight.mean(dim=1, keepdim=True) * (weight.shape[1] / channels)
    return mean.repeat(1, channels, 1, 1)
