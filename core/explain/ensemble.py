"""Explaining an ensemble run: the combined model for model-agnostic methods, each member for
the ones that look inside one network.

- LIME and SHAP explain the ensemble itself: ``EnsembleRun.model`` is one network (the members
  and the combiner, ``core.models.ensemble_graph``), so they perturb the input or integrate
  gradients of the *combined* probabilities, with the usual trust checks, through
  ``core.explain.runner.explain_input`` unchanged.
- Grad-CAM and Integrated Gradients (``PER_MEMBER``) are explained per member: a class
  activation map belongs to one network's last convolution, and the members may not even share
  an input size. Each member's explanation is an ordinary explanation of that member run (its
  own preprocessing of the file, its own sanity check and deletion curve, cached under the
  member), for the class the *ensemble* predicts unless a target is given, and is shown titled
  with the member's name.

``explain`` is what the CLI calls for any run; ``find_results`` is the page's torch-free lookup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.analyze.ensemble import is_ensemble
from core.errors import InvalidConfig
from core.explain.cache import Explanation, find_explanation
from core.progress import ProgressFn

if TYPE_CHECKING:
    import numpy as np
    import torch

    from core.models.ensemble import EnsembleRun
    from core.runs.records import Run
    from core.workspace import Workspace

PER_MEMBER = ("gradcam", "ig")


def per_member(run_kind: str, method: str) -> bool:
    """Whether ``method`` explains an ensemble member by member."""
    return run_kind == "ensemble" and method in PER_MEMBER


def explain(loaded: Any, path: str | Path, row: int, x: torch.Tensor, input_sha: str,
            shown: np.ndarray, method: str, target: int | None = None,
            params: dict[str, Any] | None = None, progress: ProgressFn | None = None,
            use_cache: bool = True, member: str | None = None,
            preview: Callable[[Explanation], None] | None = None) -> list[Explanation]:
    """``method``'s explanations of one input (``x``, read by ``read_input`` from ``path``):
    one for a run or for an ensemble's model-agnostic methods, one per member (or for
    ``member`` only) for an ensemble's ``PER_MEMBER`` methods. ``preview``: see
    ``core.explain.runner.explain_input`` (a member's map is not previewed)."""
    from core.explain.runner import explain_input

    ensemble = is_ensemble(loaded)
    if member is not None and not (ensemble and method in PER_MEMBER):
        what = "an ensemble's Grad-CAM and Integrated Gradients" if ensemble else \
            "ensemble runs"
        raise InvalidConfig(f"--member applies to {what}; drop it for {method} on "
                            f"{loaded.run_id}.")
    if ensemble and method in PER_MEMBER:
        return explain_members(loaded, path, row, x, input_sha, method, target, params,
                               progress, use_cache, member)
    return [explain_input(loaded, x, input_sha, shown, method, target, params, progress,
                          use_cache, preview)]


def explain_members(ens: EnsembleRun, path: str | Path, row: int, x: torch.Tensor,
                    input_sha: str, method: str, target: int | None = None,
                    params: dict[str, Any] | None = None, progress: ProgressFn | None = None,
                    use_cache: bool = True, member: str | None = None) -> list[Explanation]:
    """Each member's (or ``member``'s) explanation of the file, for ``target`` (default: the
    class the ensemble predicts). The ensemble's prediction is cached like any run's, so the
    Explain page shows it and finds the members' results for it."""
    from core.explain import cache
    from core.explain.runner import check_target, explain_input, read_input

    chosen = [ens.member(member)] if member is not None else list(ens.members)
    probs = ens.predict_proba(x[None])[0]
    cache.write_prediction(ens.ws, ens.run_id, ens.checkpoint_signature, input_sha, probs,
                           ens.classes)
    target = check_target(ens, target, probs)
    results = []
    for k, loaded in enumerate(chosen):
        # The member's own preprocessing of the file (its own input size): what it sees alone.
        xm, sha, shown = read_input(loaded, path, row)
        results.append(explain_input(loaded, xm, sha, shown, method, target, params,
                                     _share(progress, k, len(chosen)), use_cache))
    return [titled(r, ens.ws) for r in results]


def find_results(ws: Workspace, run: Run, input_sha: str, method: str,
                 params: dict[str, Any], target: int) -> list[Explanation] | None:
    """The cached explanations the Explain page shows for ``method``: the run's own, or for an
    ensemble's per-member method every member's, titled; None while any is missing."""
    if not per_member(run.kind, method):
        found = find_explanation(ws, run.id, input_sha, method, params, target)
        return None if found is None else [found]
    results = [find_explanation(ws, m, input_sha, method, params, target)
               for m in run.config["ensemble"]["members"]]
    if any(r is None for r in results):
        return None
    return [titled(r, ws) for r in results]  # type: ignore[arg-type]


def titled(result: Explanation, ws: Workspace) -> Explanation:
    """``result`` (a member's) with the member named in its title."""
    from core.errors import RunNotFound

    try:
        name = ws.store.get_run(result.run_id).name or result.run_id
    except RunNotFound:
        name = result.run_id
    return dataclasses.replace(result, display_name=f"{result.display_name} · member {name}")


def _share(progress: ProgressFn | None, k: int, n: int) -> ProgressFn | None:
    """Member ``k`` of ``n``'s part of one progress bar."""
    if progress is None:
        return None

    def report(done: int, total: int, message: str = "") -> None:
        progress(int(1000 * (k + (done / total if total else 1.0)) / n), 1000,
                 f"member {k + 1}/{n}: {message}")
    return report
