"""Explanations: one class per method behind a registry, trust checks, a cache and plots.

``import core.explain`` is torch-free (the dashboard lists the methods and reads cached results
with it); torch, captum, shap and lime load when a method runs. ``create_explainer`` and
``explain_input`` need a ``core.models.loaded.LoadedRun``.
"""

from core.explain import gradcam as _gradcam  # noqa: F401  (each module registers its class)
from core.explain import integrated_gradients as _ig  # noqa: F401
from core.explain import lime_explainer as _lime  # noqa: F401
from core.explain import shap_explainer as _shap  # noqa: F401
from core.explain import tabular as _tabular  # noqa: F401
from core.explain.base import Budget, Explainer
from core.explain.cache import Explanation, find_explanation, load_explanation
from core.explain.registry import (
    ExplainerSpec,
    create_explainer,
    effective_params,
    get_explainer_spec,
    list_explainers,
    register_explainer,
)

__all__ = [
    "Budget",
    "Explainer",
    "ExplainerSpec",
    "Explanation",
    "create_explainer",
    "effective_params",
    "find_explanation",
    "get_explainer_spec",
    "list_explainers",
    "load_explanation",
    "register_explainer",
]
