"""A pruned network's shape, recorded as plain numbers and rebuilt from them (imports torch).

Structured pruning changes layer widths (a conv's ``out_channels``, a batch norm's
``num_features``, a depthwise conv's ``groups``). A checkpoint must not pickle the pruned module
(``torch.load(weights_only=True)`` stays the only way a checkpoint is read), so it records the
shape attributes of every layer (:func:`describe`: ``{layer: {attr: int}}``) next to the state
dict; :func:`rebuild` resizes a freshly built network of the same registry model to them, and
the state dict then loads strictly as for any run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.errors import CheckpointDamaged

# The attributes Torch-Pruning rewrites when it removes channels (torch.nn's own names, plus
# ``out_channels`` of torchvision's blocks). Forward passes read ``groups``; the rest keeps each
# layer's description true for a later pruning round and for ``repr``.
SHAPE_ATTRS = ("in_channels", "out_channels", "groups", "num_features", "in_features",
               "out_features", "num_channels", "num_groups", "num_parameters",
               "normalized_shape")
ARCHITECTURE_KEY = "architecture"  # the checkpoint entry holding describe()'s result

Architecture = dict[str, dict[str, Any]]


def describe(model: nn.Module) -> Architecture:
    """Each layer's shape attributes, as ints and lists of ints only (weights_only loads them)."""
    found: Architecture = {}
    for name, module in model.named_modules():
        attrs = {}
        for attr in SHAPE_ATTRS:
            value = getattr(module, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                attrs[attr] = value
            elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
                attrs[attr] = list(value)
        if attrs:
            found[name] = attrs
    return found


def rebuild(model: nn.Module, architecture: Architecture, state: dict[str, Any]) -> nn.Module:
    """Resize ``model`` in place to ``architecture``, with parameters and buffers shaped as in
    ``state`` (empty: the caller loads ``state`` into them next). A layer the model does not
    have means the checkpoint is not of this model: one ``CheckpointDamaged`` line."""
    modules = dict(model.named_modules())
    strangers = sorted(set(architecture) - set(modules))
    if strangers:
        raise CheckpointDamaged(f"The checkpoint's pruned architecture does not fit "
                                f"{type(model).__name__} (unknown layers: "
                                f"{', '.join(strangers[:3])}); was it written for another model?")
    for name, attrs in architecture.items():
        for attr, value in attrs.items():
            setattr(modules[name], attr, tuple(value) if isinstance(value, list) else value)
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        module = modules.get(owner)
        if module is None or not isinstance(value, torch.Tensor):
            continue  # load_model_state names what does not fit
        _resize(module, leaf, value)
    return model


def _resize(module: nn.Module, leaf: str, value: torch.Tensor) -> None:
    param = module._parameters.get(leaf)
    if param is not None and param.shape != value.shape:
        module._parameters[leaf] = nn.Parameter(torch.empty_like(value, dtype=param.dtype),
                                                requires_grad=param.requires_grad)
    buffer = module._buffers.get(leaf)
    if buffer is not None and buffer.shape != value.shape:
        module._buffers[leaf] = torch.empty_like(value, dtype=buffer.dtype)


def rebuild_from_checkpoint(model: nn.Module, checkpoint: dict[str, Any],
                            state: dict[str, Any]) -> nn.Module:
    """``rebuild`` when the checkpoint records an architecture (a pruned run), else ``model``."""
    architecture = checkpoint.get(ARCHITECTURE_KEY)
    if architecture is None:
        return model
    if not isinstance(architecture, dict):
        raise CheckpointDamaged("The checkpoint's architecture entry is not a mapping of layers; "
                                "the file is damaged.")
    return rebuild(model, architecture, state)
