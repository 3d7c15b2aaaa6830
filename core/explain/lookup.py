"""Find what ``python -m core explain`` would return in the cache, before loading anything.

A cached explanation is keyed by (run, checkpoint signature, input sha256, method, effective
parameters, target class): every part is known without torch when the target is given or the
input's predicted class was recorded by an earlier explanation (``explain/predictions/``). The
CLI asks here first, so a cache hit costs reading two files, not importing torch, loading the
model and predicting. Anything this module cannot settle (a file it cannot read, a target out of
range, a ``--member`` that is no member) is a miss: the full path then computes, or raises its
usual error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import UserError
from core.explain import cache
from core.explain.ensemble import find_results, per_member, titled
from core.explain.registry import effective_params
from core.explain.runner import SUMMARY_METHOD

if TYPE_CHECKING:
    from core.workspace import Workspace


def cached_explanations(ws: Workspace, run_id: str, file: str | Path, methods: list[str],
                        target: int | None = None,
                        params: dict[str, dict[str, Any]] | None = None, row: int = 0,
                        member: str | None = None) -> list[Any] | None:
    """Every method's stored explanation of ``file`` (row ``row`` of a CSV) for ``target`` (the
    recorded predicted class if None), in the order the CLI computes them; None as soon as one
    is missing."""
    from core.data import get_info

    run = ws.store.get_run(run_id)
    info = get_info(ws, run.config["data"]["dataset"])
    sha = _input_sha(file, info, row)
    if sha is None:
        return None
    target = _target(ws, run_id, sha, target, len(info.classes))
    if target is None:
        return None
    found: list[Any] = []
    for method in methods:
        chosen = effective_params(method, info.modality, (params or {}).get(method))
        results = _results(ws, run, sha, method, chosen, target, member)
        if results is None:
            return None
        found += results
    return found


def cached_summary(ws: Workspace, run_id: str, target: int, rows: int,
                   params: dict[str, Any] | None = None) -> Any | None:
    """The stored global SHAP summary of a tabular run over ``rows`` test rows, or None."""
    from core.data import get_info

    run = ws.store.get_run(run_id)
    info = get_info(ws, run.config["data"]["dataset"])
    if info.modality != "tabular" or not 0 <= target < len(info.classes):
        return None
    return cache.find_explanation(ws, run_id, f"{cache.SUMMARY_INPUT}:{rows}", SUMMARY_METHOD,
                                  effective_params("shap", "tabular", params), target)


def _input_sha(file: str | Path, info: Any, row: int) -> str | None:
    """The cache's input hash: the file's bytes for an image, the row's values for a table."""
    path = Path(file)
    if not path.is_file():
        return None
    if info.modality != "tabular":
        return cache.sha256_file(path)
    from core.analyze.predict import read_rows

    try:
        rows = read_rows(path, info.feature_names, path.name)
    except (UserError, OSError, ValueError):
        return None
    return cache.row_sha(rows[row]) if 0 <= row < len(rows) else None


def _target(ws: Workspace, run_id: str, sha: str, target: int | None,
            classes: int) -> int | None:
    if target is not None:
        return int(target) if 0 <= int(target) < classes else None
    probs = cache.read_prediction(ws, run_id, sha)
    return int(np.argmax(probs)) if probs is not None else None


def _results(ws: Workspace, run: Any, sha: str, method: str, params: dict[str, Any],
             target: int, member: str | None) -> list[Any] | None:
    """``core.explain.ensemble.explain``'s results for one method, from the cache."""
    if member is None:
        return find_results(ws, run, sha, method, params, target)
    if not per_member(run.kind, method) or member not in run.config["ensemble"]["members"]:
        return None
    found = cache.find_explanation(ws, member, sha, method, params, target)
    return None if found is None else [titled(found, ws)]
