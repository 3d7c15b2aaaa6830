"""Model registry (torch-free to list), builders, weights loading and the loaded-run helper.

``import core.models`` never imports torch: the registry holds specs and builders that import it
when a model is built. The helpers that work on built models (heads, weights, surgery) import
torch, so they are re-exported lazily, on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from core.models import builders as _builders  # noqa: F401  (registers the built-in models)
from core.models.factory import create_model
from core.models.registry import (
    ModelSpec,
    default_model,
    get_builder,
    get_spec,
    list_models,
    register_model,
)

_LAZY = {  # name -> module that defines it (each imports torch)
    "adapt_conv_weight": "core.models.surgery",
    "classifier_head": "core.models.surgery",
    "freeze_backbone": "core.models.surgery",
    "head_parameter_names": "core.models.surgery",
    "load_weights": "core.models.weights",
    "pretrained_weights_path": "core.models.weights",
    "SmallCNN": "core.models.nets",
}

__all__ = [
    "ModelSpec", "SmallCNN", "adapt_conv_weight", "classifier_head", "create_model",
    "default_model", "freeze_backbone", "get_builder", "get_spec", "head_parameter_names",
    "list_models", "load_weights", "pretrained_weights_path", "register_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
