"""Explain one input end to end: preprocess, predict, attribute, check, cache.

``explain_input`` is what the CLI (and so the dashboard's background tasks) calls. The result is
cached per (run, checkpoint, input sha256, method, effective parameters, target class); a second
call with the same key reads it back instead of recomputing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import InvalidConfig
from core.explain import cache
from core.explain.base import rows_to_raw, to_uint8_image
from core.explain.registry import create_explainer, effective_params, get_explainer_spec
from core.explain.trust import deletion_curve, sanity_check, signed_map
from core.progress import ProgressFn, no_progress

if TYPE_CHECKING:
    import torch

    from core.models.loaded import LoadedRun

SUMMARY_METHOD = "shap-summary"
SUMMARY_ROWS = 100


def read_input(loaded: LoadedRun, path: str | Path, row: int = 0
               ) -> tuple[torch.Tensor, str, np.ndarray]:
    """(preprocessed tensor, input sha256, what to draw it with) for an image or CSV file.

    Images: the sha256 of the file's bytes, and the uint8 image as the model sees it. Tables:
    row ``row`` of the CSV, its ``row_sha`` and its feature values.
    """
    if loaded.info.modality == "tabular":
        from core.analyze.predict import read_rows

        rows = read_rows(path, loaded.info.feature_names, Path(path).name)
        if not 0 <= row < len(rows):
            raise InvalidConfig(f"{Path(path).name} has {len(rows)} rows; got row {row}.")
        x = loaded.preprocess.rows(rows[row:row + 1])[0]
        return x, cache.row_sha(rows[row]), rows[row]
    from core.data import open_image

    x = loaded.preprocess(open_image(path))
    return x, cache.sha256_file(path), to_uint8_image(x, loaded.info.mean, loaded.info.std)


def check_target(loaded: LoadedRun, target: int | None, probs: np.ndarray) -> int:
    if target is None:
        return int(np.argmax(probs))
    if not 0 <= int(target) < len(loaded.classes):
        raise InvalidConfig(f"target must be a class index from 0 to {len(loaded.classes) - 1} "
                            f"({', '.join(loaded.classes)}); got {target}.")
    return int(target)


def explain_input(loaded: LoadedRun, x: torch.Tensor, input_sha: str, shown: np.ndarray,
                  method: str, target: int | None = None, params: dict[str, Any] | None = None,
                  progress: ProgressFn | None = None, use_cache: bool = True,
                  preview: Callable[[cache.Explanation], None] | None = None
                  ) -> cache.Explanation:
    """One method's explanation of ``x`` for ``target`` (the predicted class if None), with
    its sanity check and deletion curve; read from the cache when it is already there.

    ``preview``, if given, gets the result as soon as the map exists, before the trust checks
    (its ``sanity`` and ``deletion`` still empty): a page can draw the map while they run.
    Only the finished result is stored.
    """
    modality = loaded.info.modality
    spec = get_explainer_spec(method, modality)
    params = effective_params(method, modality, params)
    _refuse_per_member(loaded, method)
    probs = loaded.predict_proba(x[None])[0]
    cache.write_prediction(loaded.ws, loaded.run_id, loaded.checkpoint_signature, input_sha,
                           probs, loaded.classes)
    target = check_target(loaded, target, probs)
    key = cache.cache_key(loaded.run_id, loaded.checkpoint_signature, input_sha, method, params,
                          target)
    if use_cache and (hit := cache.load_explanation(loaded.ws, loaded.run_id, method, key)):
        return hit
    progress = progress or no_progress
    started = time.monotonic()
    explainer = create_explainer(method, loaded, **params)
    attributions = explainer.explain(x, target, _phase(progress, 0.0, 0.5, spec.display_name))
    result = cache.Explanation(
        run_id=loaded.run_id, method=method, modality=modality, display_name=spec.display_name,
        target=target, target_label=loaded.classes[target], params=params, input_sha=input_sha,
        signature=loaded.checkpoint_signature, classes=loaded.classes,
        attributions=attributions, probs=probs.astype(np.float32),
        image=shown if modality == "image" else None,
        row=shown if modality == "tabular" else None,
        feature_names=list(loaded.info.feature_names), extras=dict(explainer.extras), key=key)
    if preview is not None:  # drawing it is not the method's time
        drawn = time.monotonic()
        preview(result)
        started += time.monotonic() - drawn
    sanity, random_attr = sanity_check(explainer, x, target, attributions,
                                       progress=_phase(progress, 0.5, 0.45, "sanity check"))
    deletion = deletion_curve(loaded.model, x, signed_map(attributions), target)
    progress(1000, 1000, "done")
    result = dataclasses.replace(
        result, random_attributions=random_attr, sanity=sanity.to_dict(),
        deletion={**deletion.to_arrays(), "auc": deletion.auc, "random_auc": deletion.random_auc},
        seconds=round(time.monotonic() - started, 3), created_at=time.time())
    cache.save_explanation(loaded.ws, result)
    return result


def explain_summary(loaded: LoadedRun, target: int, rows: int = SUMMARY_ROWS,
                    params: dict[str, Any] | None = None, progress: ProgressFn | None = None,
                    use_cache: bool = True) -> cache.Explanation:
    """Tabular SHAP values of ``rows`` test rows for class ``target``: the global summary."""
    from core.data import load_dataset
    from core.explain.base import Budget

    if loaded.info.modality != "tabular":
        raise InvalidConfig("The global SHAP summary is for tabular runs; explain images one "
                            "by one.")
    params = effective_params("shap", "tabular", params)
    target = check_target(loaded, target, np.zeros(len(loaded.classes)))
    input_sha = f"{cache.SUMMARY_INPUT}:{rows}"
    key = cache.cache_key(loaded.run_id, loaded.checkpoint_signature, input_sha,
                          SUMMARY_METHOD, params, target)
    if use_cache and (hit := cache.load_explanation(loaded.ws, loaded.run_id, SUMMARY_METHOD,
                                                    key)):
        return hit
    data = load_dataset(loaded.ws, loaded.info.name).array("test")
    pick = np.sort(np.random.default_rng(0).permutation(len(data))[:rows])
    x = loaded.preprocess.rows(data[pick])
    started = time.monotonic()
    explainer = create_explainer("shap", loaded, **params)
    budget = Budget(params["time_budget_s"], "SHAP summary")
    values = explainer.explain_rows(x, target, budget, progress or no_progress)
    result = cache.Explanation(
        run_id=loaded.run_id, method=SUMMARY_METHOD, modality="tabular",
        display_name="SHAP summary", target=target, target_label=loaded.classes[target],
        params=params, input_sha=input_sha, signature=loaded.checkpoint_signature,
        classes=loaded.classes, attributions=values, probs=loaded.predict_proba(x),
        row=rows_to_raw(x.numpy(), loaded.info.mean, loaded.info.std),
        feature_names=list(loaded.info.feature_names),
        extras={"base_value": explainer.extras.get("base_value"), "rows": pick.tolist()},
        seconds=round(time.monotonic() - started, 3), created_at=time.time(), key=key)
    cache.save_explanation(loaded.ws, result)
    return result


def _refuse_per_member(loaded: LoadedRun, method: str) -> None:
    """An ensemble's Grad-CAM and IG belong to its members (``core.explain.ensemble``)."""
    from core.analyze.ensemble import is_ensemble
    from core.explain.ensemble import PER_MEMBER

    if method in PER_MEMBER and is_ensemble(loaded):
        raise InvalidConfig(f"{method} explains one network: on ensemble {loaded.run_id} it "
                            "runs per member (core.explain.ensemble.explain).")


def _phase(progress: ProgressFn, start: float, span: float, label: str) -> ProgressFn:
    """Map one phase's (done, total) onto a share of one 0..1000 bar."""
    def report(done: int, total: int, message: str = "") -> None:
        share = done / total if total else 1.0
        progress(int(1000 * (start + span * share)), 1000, label)
    return report
