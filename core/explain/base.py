"""The base class of every explanation method, its compute budget, and small shared helpers.

One class per method (pattern of captum's ``Attribution``): fixed things (the run, the
parameters) in the constructor, the varying ones in ``explain(x, target)``. Torch, captum, shap
and lime are imported inside the methods, never at module level.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from core.errors import ComputeBudgetExceeded
from core.progress import ProgressFn, no_progress

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_TIME_BUDGET_S = 300.0



class Budget:
    """A time budget, checked between batches: past it, the method stops with a clear error."""

    def __init__(self, max_seconds: float, what: str):
        self.max_seconds, self.what = float(max_seconds), what
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check(self, done: int, total: int) -> None:
        if self.elapsed > self.max_seconds:
            raise ComputeBudgetExceeded(
                f"{self.what} stopped after {self.elapsed:.1f} s at {done}/{total}: its time "
                f"budget is {self.max_seconds:g} s. Lower its samples or steps, or raise "
                "time_budget_s.")


class Explainer:
    """``explain(x, target) -> attributions`` for one preprocessed input ``x``.

    ``x`` is the normalised tensor the model sees: (C, H, W) for images, (F,) for tables.
    Images return (K, H, W) float32 with K = 1 (a map) or C (per channel); tables return (F,).
    ``extras`` holds what a method reports besides the attributions (e.g. SHAP's base value).
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {"time_budget_s": DEFAULT_TIME_BUDGET_S}
    limits: ClassVar[dict[str, tuple[float, float]]] = {"time_budget_s": (0.1, 24 * 3600)}

    def __init__(self, loaded_run: Any, **params: Any):
        self.loaded = loaded_run
        self.model: nn.Module = loaded_run.model
        self.params = {**self.defaults, **params}
        self.extras: dict[str, Any] = {}

    def explain(self, x: torch.Tensor, target: int,
                progress: ProgressFn | None = None) -> np.ndarray:
        self.extras = {}
        budget = Budget(self.params["time_budget_s"], self.display_name or self.name)
        attributions = self._attribute(x.detach(), int(target), budget, progress or no_progress)
        return np.asarray(attributions, dtype=np.float32)

    def _attribute(self, x: torch.Tensor, target: int, budget: Budget,
                   progress: ProgressFn) -> np.ndarray:
        raise NotImplementedError

    def with_model(self, model: nn.Module) -> Explainer:
        """The same method and parameters on another model (the sanity check's random copy)."""
        clone = copy.copy(self)
        clone.model = model
        clone.extras = {}
        return clone

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).to(self.device)


def gradcam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The name of Grad-CAM's layer: the output of the last convolutional layer, after its
    normalisation and activation (the last module, in the order of one forward pass, whose
    output is a feature map larger than 1x1 and not a pooling's).

    Not the ``Conv2d`` itself: its output, before BatchNorm, has an arbitrary sign, and the
    ReLU'd Grad-CAM of such maps is often blank. For a ResNet this is ``layer4``; for the
    small CNN the ReLU after its last convolution.
    """
    import torch
    from torch import nn

    from core.errors import InvalidConfig

    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise InvalidConfig(f"{type(model).__name__} has no convolutional layer: Grad-CAM needs "
                            "one. Use Integrated Gradients, SHAP or LIME for this model.")
    pools = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    names = {m: n for n, m in model.named_modules() if n}
    kept, pooled, candidates = [], set(), []

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        kept.append(output)  # alive until the end, so ids stay unique
        if isinstance(module, pools) or id(output) in pooled:
            pooled.add(id(output))  # a container returning a pooled map is pooled too
        elif output.ndim == 4 and min(output.shape[-2:]) > 1:
            candidates.append(names[module])

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    if not candidates:  # every map is 1x1 (a tiny input): the last convolution, then
        return [n for m, n in names.items() if isinstance(m, nn.Conv2d)][-1]
    return candidates[-1]


def target_output(model: nn.Module, target: int, softmax: bool = False) -> nn.Module:
    """A module whose only output is column ``target`` (a logit, or a probability): explainers
    that compute every output they are given then compute just that one."""
    import torch

    class TargetOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.model(x)
            if softmax:
                out = torch.softmax(out, dim=1)
            return out[:, target:target + 1]

    return TargetOutput().eval()


def to_uint8_image(x: torch.Tensor, mean: list[float], std: list[float]) -> np.ndarray:
    """Undo the normalisation: (C, H, W) tensor -> uint8 (H, W) or (H, W, 3), as the model saw
    it (resized). Exact: the preprocessing scaled uint8 pixels, and rounding recovers them."""
    arr = x.detach().cpu().numpy().astype(np.float64)
    std = np.array([s if s > 1e-12 else 1.0 for s in std]).reshape(-1, 1, 1)
    arr = (arr * std + np.asarray(mean).reshape(-1, 1, 1)) * 255.0
    img = np.clip(np.rint(arr), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return img[..., 0] if img.shape[-1] == 1 else img


def rows_to_raw(x: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """Undo the tabular standardisation (feature units, for LIME's conditions and the plots)."""
    std_arr = np.array([s if s > 1e-12 else 1.0 for s in std], dtype=np.float64)
    return (np.asarray(x, dtype=np.float64) * std_arr + np.asarray(mean)).astype(np.float32)


def training_sample(loaded_run: Any, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` preprocessed samples of the run's training split, drawn with ``seed`` (corrupt
    ones skipped): SHAP's background and LIME's reference distribution."""
    import torch

    from core.data import build_torch_split, load_dataset
    from core.errors import InvalidRunState

    dataset = load_dataset(loaded_run.ws, loaded_run.info.name)
    split = build_torch_split(dataset, "train", loaded_run.image_size)
    order = np.random.default_rng(seed).permutation(len(split))
    items = []
    for i in order:
        item = split[int(i)]
        if len(item) == 3:  # a CorruptSample has one field: skipped
            items.append(item[0])
        if len(items) == n:
            break
    if not items:
        raise InvalidRunState(f"{loaded_run.info.name} has no readable training sample to use "
                              "as a background.")
    return torch.stack(items)
