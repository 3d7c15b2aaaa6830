"""Model registry, builders, weights loading and the loaded-run helper."""

from core.models.registry import (
    ModelSpec,
    adapt_conv_weight,
    classifier_head,
    create_model,
    freeze_backbone,
    get_spec,
    head_parameter_names,
    list_models,
    load_weights,
    pretrained_weights_path,
    register_model,
)

__all__ = [
    "ModelSpec", "adapt_conv_weight", "classifier_head", "create_model", "freeze_backbone",
    "get_spec", "head_parameter_names", "list_models", "load_weights", "pretrained_weights_path",
    "register_model",
]
