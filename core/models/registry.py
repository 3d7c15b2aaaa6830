"""The model registry: specs and builders by name, listed without importing torch.

A builder is registered with :func:`register_model` and imports torch inside its body, so listing
the models (``list_models()``, the Train page's model picker, ``python -m core models``) stays
torch-free and fast. :func:`~core.models.factory.create_model` builds one.

The built-in models are registered in :mod:`core.models.builders`, which ``core.models`` imports:
any import of this module (through its package) sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ModelNotFound

# builder(info, cfg, image_size) -> nn.Module with a fresh head sized to len(info.classes);
# typed loosely so this module never needs torch.
Builder = Callable[[Any, Any, int | None], Any]

# What a newcomer should train first on each modality: small and fast on a laptop CPU.
_DEFAULTS = {"image": "smallcnn", "tabular": "mlp"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    modalities: tuple[str, ...]  # subset of ("image", "tabular")
    description: str
    default_image_size: int | None  # None: the model takes the dataset's own image size
    pretrained_available: bool  # torchvision publishes ImageNet weights for it
    dropout: float | None = None  # its default dropout rate; None: it has no dropout layer


_REGISTRY: dict[str, tuple[ModelSpec, Builder]] = {}


def register_model(
    name: str,
    *,
    modalities: tuple[str, ...],
    description: str,
    default_image_size: int | None = None,
    pretrained: bool = False,
    dropout: float | None = None,
) -> Callable[[Builder], Builder]:
    """Register ``builder(info, cfg, image_size) -> nn.Module`` under ``name``.

    The builder must import torch inside its body: registering never imports it.
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        spec = ModelSpec(name, tuple(modalities), description, default_image_size, pretrained,
                         dropout)
        _REGISTRY[name] = (spec, builder)
        return builder

    return decorator


def list_models(modality: str | None = None) -> list[ModelSpec]:
    """Registered models, in registration order, optionally only those supporting ``modality``."""
    specs = [spec for spec, _ in _REGISTRY.values()]
    return [s for s in specs if modality is None or modality in s.modalities]


def get_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; an unknown name raises ``ModelNotFound`` listing the known."""
    if name not in _REGISTRY:
        raise ModelNotFound(f"Unknown model {name!r}. Available: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name][0]


def get_builder(name: str) -> Builder:
    get_spec(name)  # the same error for an unknown name
    return _REGISTRY[name][1]


def default_model(modality: str) -> str:
    """The model to suggest first for ``modality``: the small CNN on images, the MLP on tables."""
    name = _DEFAULTS.get(modality)
    if name in _REGISTRY and modality in _REGISTRY[name][0].modalities:
        return name
    specs = list_models(modality)
    if not specs:
        raise ModelNotFound(f"No registered model accepts {modality} data.")
    return specs[0].name
