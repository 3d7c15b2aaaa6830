"""Which explanations are light enough to compute where the user waits.

The one rule that sends an explanation either to the dashboard's warm, in-process path (the
model already loaded, no process to start: an overlay in about a second) or to a background job
(a fresh process, with progress in the store and a cancel button). Pages and the CLI ask
``is_light``; nothing else decides.

Light: one input, one network, and a method whose model passes stay within the caps below (its
defaults): Grad-CAM (a forward and a partial backward), Integrated Gradients up to 64 steps, SHAP
up to its default samples and background on inputs up to 128x128 px (at 224 px its default took
28 s warm on a 2-core CPU: ``benchmarks/explain_latency.py --warm-path``). Everything else is
heavy: image LIME (hundreds of forward passes even at its default), larger budgets, several
inputs (a summary over the test split), ensembles (one explanation per member network). Each
light method is then run with its sanity check (the same method on a randomised copy) and
deletion curve, so its cost is about twice the method's plus the curve's forward passes.
"""

from __future__ import annotations

from typing import Any

from core.explain.registry import effective_params

PIXELS = "pixels"  # a cap on the input's height x width, not a method parameter
# (method, modality) -> the largest value of each cost parameter that is still light. A method
# that is not listed is never light.
LIGHT_CAPS: dict[tuple[str, str], dict[str, float]] = {
    ("gradcam", "image"): {},
    ("ig", "image"): {"n_steps": 64},
    ("shap", "image"): {"nsamples": 64, "background": 32, PIXELS: 128 * 128},
    ("shap", "tabular"): {"nsamples": 256, "background": 100},
    ("lime", "tabular"): {"num_samples": 1000},
}


def is_light(method: str, modality: str, params: dict[str, Any] | None = None,
             inputs: int = 1, networks: int = 1, pixels: int | None = None) -> bool:
    """Whether ``method`` on ``inputs`` inputs of ``pixels`` pixels each (height x width; None:
    not known) of a model of ``networks`` networks, with ``params`` (checked and completed with
    the defaults), may run in the dashboard's process."""
    caps = LIGHT_CAPS.get((method, modality))
    if caps is None or inputs != 1 or networks != 1:
        return False
    values = {**effective_params(method, modality, params), PIXELS: pixels or 0}
    return all(float(values[name]) <= cap for name, cap in caps.items())
