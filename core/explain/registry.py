"""The registry of explanation methods: one class per (method, modality), registered by name.

Importing this module (and every method module) is torch-free: the classes import torch, captum,
shap and lime inside their methods, so the dashboard can list the methods and their parameters
without loading any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidConfig

MODALITIES = ("image", "tabular")


@dataclass(frozen=True)
class ExplainerSpec:
    """What the UI and the CLI need to know about a method without loading it."""

    name: str  # the CLI name: gradcam, ig, shap, lime
    modality: str  # image | tabular
    display_name: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)  # every parameter, with its default
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)  # the compute budget
    order: int = 100  # position in lists (cheapest first)
    cls: type | None = field(default=None, compare=False, repr=False)


_REGISTRY: dict[tuple[str, str], ExplainerSpec] = {}


def register_explainer(name: str, *, modality: str, display_name: str, description: str,
                       order: int = 100) -> Callable[[type], type]:
    """Class decorator: register an ``Explainer`` subclass as method ``name`` for ``modality``.

    The class's ``defaults`` and ``limits`` attributes become the spec's parameters.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")

    def decorator(cls: type) -> type:
        if (name, modality) in _REGISTRY:
            raise ValueError(f"explainer {name!r} for {modality} is already registered")
        cls.name, cls.modality, cls.display_name = name, modality, display_name
        _REGISTRY[(name, modality)] = ExplainerSpec(
            name, modality, display_name, description, dict(cls.defaults), dict(cls.limits),
            order, cls)
        return cls

    return decorator


def list_explainers(modality: str | None = None) -> list[ExplainerSpec]:
    """Registered methods (by ``order``), optionally only those for ``modality``."""
    specs = [s for s in _REGISTRY.values() if modality is None or s.modality == modality]
    return sorted(specs, key=lambda s: s.order)


def get_explainer_spec(name: str, modality: str) -> ExplainerSpec:
    spec = _REGISTRY.get((name, modality))
    if spec is None:
        choices = ", ".join(s.name for s in list_explainers(modality)) or "none"
        raise InvalidConfig(f"Unknown explanation method {name!r} for {modality} data. "
                            f"Choose from: {choices}.")
    return spec


def effective_params(name: str, modality: str, params: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """The method's defaults overridden by ``params``, checked against its limits.

    Cache keys are computed from these, so leaving a parameter at its default and giving the
    default explicitly find the same cached result.
    """
    spec = get_explainer_spec(name, modality)
    params = {k: v for k, v in (params or {}).items() if v is not None}
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise InvalidConfig(f"{spec.display_name} has no parameter {', '.join(unknown)}; "
                            f"its parameters are: {', '.join(spec.defaults) or 'none'}.")
    merged = {**spec.defaults, **params}
    for key, value in merged.items():
        default = spec.defaults[key]
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            continue
        try:
            value = type(default)(value)
        except (TypeError, ValueError):
            raise InvalidConfig(f"{spec.display_name}: {key} must be a number, got "
                                f"{value!r}.") from None
        low, high = spec.limits.get(key, (float("-inf"), float("inf")))
        if not low <= value <= high:
            raise InvalidConfig(f"{spec.display_name}: {key} must be between {low:g} and "
                                f"{high:g} (its compute budget), got {value}.")
        merged[key] = value
    return merged


def create_explainer(name: str, loaded_run: Any, **params: Any):
    """An explainer for ``loaded_run`` (a ``core.models.loaded.LoadedRun``), parameters checked."""
    spec = get_explainer_spec(name, loaded_run.info.modality)
    return spec.cls(loaded_run, **effective_params(name, spec.modality, params))
