"""Explanations on `shapes` (whose masks say where the object is) and on a table.

A small CNN is trained once for the module. Grad-CAM and Integrated Gradients must put more of
their attribution mass inside the true shape than a uniform map would; the sanity check must
tell the trained model from a randomised copy; results are cached as arrays and JSON.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli

from core.config import RunConfig
from core.data import load_dataset
from core.errors import ComputeBudgetExceeded, InvalidConfig
from core.explain import create_explainer, effective_params, list_explainers
from core.explain import runner as explain_runner
from core.explain.base import target_output
from core.explain.cache import checkpoint_signature, find_explanation, load_explanation
from core.explain.runner import explain_input, explain_summary, read_input
from core.explain.trust import (
    SANITY_THRESHOLD,
    defined_mean,
    deletion_curve,
    randomized_copy,
    saliency,
    sanity_check,
)
from core.models.loaded import load_run
from core.runs import create_run
from core.train import execute_run
from core.workspace import Workspace

SIZE = 16  # shapes are 64x64; the run shrinks them 4x (cheap to train) and masks are pooled
POOL = 64 // SIZE
N_IMAGES = 8


def train(ws: Workspace, dataset: str, model: str, epochs: int, batch_size: int,
          **data) -> str:
    raw = RunConfig().to_dict()
    raw["data"].update(dataset=dataset, **data)
    raw["model"]["name"] = model
    raw["train"].update(epochs=epochs, batch_size=batch_size, lr=2e-3, seed=0,
                        scheduler="cosine")
    run = create_run(ws.store, RunConfig.from_dict(raw))
    summary = execute_run(ws, run.id)
    assert summary["status"] == "completed", summary
    return run.id


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    with Workspace.open(tmp_path_factory.mktemp("explain_ws")) as ws:
        run_id = train(ws, "shapes", "smallcnn", epochs=12, batch_size=16, image_size=SIZE)
        yield load_run(ws, run_id)


@pytest.fixture(scope="module")
def samples(shapes_run):
    """Correctly classified test images: (index, tensor, label, mask pooled to SIZE)."""
    dataset = load_dataset(shapes_run.ws, "shapes")
    labels = dataset.labels("test")
    picked = []
    for i in range(60):
        x = shapes_run.preprocess(dataset.raw("test", i))
        if shapes_run.predict_proba(x[None])[0].argmax() == labels[i]:
            mask = dataset.mask("test", i).reshape(SIZE, POOL, SIZE, POOL).mean((1, 3))
            picked.append((i, x, int(labels[i]), mask))
        if len(picked) == N_IMAGES:
            break
    return picked


def mass_in_mask(attributions: np.ndarray, mask: np.ndarray) -> float:
    s = saliency(attributions)
    return float((s * mask).sum() / max(s.sum(), 1e-12))


def test_the_model_learnt_the_shapes(shapes_run, samples):
    dataset = load_dataset(shapes_run.ws, "shapes")
    n = 200
    x = torch.stack([shapes_run.preprocess(dataset.raw("test", i)) for i in range(n)])
    accuracy = (shapes_run.predict_proba(x).argmax(1) == dataset.labels("test")[:n]).mean()
    assert accuracy > 0.6, accuracy  # chance is 0.25 (about 0.75 after 12 epochs at 16 px)
    assert len(samples) == N_IMAGES


def test_registry_lists_methods_and_checks_parameters():
    assert [s.name for s in list_explainers("image")] == ["gradcam", "ig", "shap", "lime"]
    assert [s.name for s in list_explainers("tabular")] == ["shap", "lime"]
    assert effective_params("ig", "image", {"n_steps": "16"})["n_steps"] == 16
    with pytest.raises(InvalidConfig, match="between"):
        effective_params("lime", "image", {"num_samples": 10**7})
    with pytest.raises(InvalidConfig, match="no parameter"):
        effective_params("gradcam", "image", {"n_steps": 5})
    with pytest.raises(InvalidConfig, match="Choose from"):
        effective_params("deeplift", "image")


@pytest.mark.parametrize("method,params", [("gradcam", {}), ("ig", {"n_steps": 16})])
def test_attribution_mass_is_inside_the_shape(shapes_run, samples, method, params):
    explainer = create_explainer(method, shapes_run, **params)
    random_explainer = explainer.with_model(randomized_copy(shapes_run.model))
    trained, uniform, randomised, similarity = [], [], [], []
    for _, x, label, mask in samples:
        attr = explainer.explain(x, label)
        assert attr.shape[-2:] == (SIZE, SIZE) and np.isfinite(attr).all()
        trained.append(mass_in_mask(attr, mask))
        uniform.append(float(mask.mean()))  # the share a uniform map puts inside the mask
        check, random_attr = sanity_check(explainer, x, label, attr)
        similarity.append(check.similarity)
        randomised.append(mass_in_mask(random_explainer.explain(x, label), mask))
    assert np.mean(trained) > 1.2 * np.mean(uniform), (trained, uniform)
    # The sanity check tells the trained model from a randomised one: the maps differ (an
    # undefined check, a flat map, is left out of the mean, never counted as a pass)...
    assert defined_mean(similarity) < SANITY_THRESHOLD, similarity
    # ...and only the trained model's map finds the shape.
    assert np.mean(trained) > 1.2 * np.mean(randomised), (trained, randomised)


def test_deletion_removes_the_target_faster_than_random(shapes_run, samples):
    explainer = create_explainer("gradcam", shapes_run)
    aucs, random_aucs = [], []
    for _, x, label, _ in samples:
        curve = deletion_curve(shapes_run.model, x, saliency(explainer.explain(x, label)), label)
        assert curve.probs.shape == curve.fractions.shape == (21,)
        assert curve.probs[0] == pytest.approx(shapes_run.predict_proba(x[None])[0][label],
                                               abs=1e-5)
        aucs.append(curve.auc)
        random_aucs.append(curve.random_auc)
    assert np.mean(aucs) < np.mean(random_aucs), (aucs, random_aucs)


def test_shap_explains_the_target_only_and_lime_reports_progress(shapes_run, samples):
    _, x, label, _ = samples[0]
    wrapped = target_output(shapes_run.model, label)
    with torch.no_grad():
        full = shapes_run.model(x[None])
        assert wrapped(x[None]).shape == (1, 1)
        assert torch.allclose(wrapped(x[None])[:, 0], full[:, label])
    seen = []
    shap = create_explainer("shap", shapes_run, nsamples=16, background=8, batch_size=8)
    values = shap.explain(x, label, lambda d, t, m="": seen.append((d, t)))
    assert values.shape == tuple(x.shape) and np.isfinite(values).all()
    assert shap.extras["outputs_explained"] == 1 and seen[-1] == (16, 16)
    seen.clear()
    lime = create_explainer("lime", shapes_run, num_samples=60, batch_size=32)
    weights = lime.explain(x, label, lambda d, t, m="": seen.append((d, t)))
    assert weights.shape == (1, SIZE, SIZE) and np.abs(weights).sum() > 0
    assert seen[-1] == (60, 60) and lime.extras["segments"] > 1


def test_time_budget_stops_a_method_between_batches(shapes_run, samples):
    _, x, label, _ = samples[0]
    slow = create_explainer("ig", shapes_run, n_steps=400, internal_batch_size=1,
                            time_budget_s=0.1)
    with pytest.raises(ComputeBudgetExceeded, match="time budget"):
        slow.explain(x, label)


def test_results_are_cached_as_arrays_and_json(shapes_run, samples, tmp_path, monkeypatch):
    index, _, label, _ = samples[0]
    image = load_dataset(shapes_run.ws, "shapes").raw("test", index)
    path = tmp_path / "shape.png"
    image.save(path)
    x, sha, shown = read_input(shapes_run, path)
    assert shown.shape == (SIZE, SIZE, 3) and shown.dtype == np.uint8
    first = explain_input(shapes_run, x, sha, shown, "gradcam")
    assert first.target == label and first.sanity["verdict"] in ("passed", "failed",
                                                                 "undefined")
    assert (first.sanity["similarity"] is None) == (first.sanity["verdict"] == "undefined")
    assert first.deletion["auc"] >= 0 and first.image.shape == (SIZE, SIZE, 3)
    folder = shapes_run.ws.home / "runs" / shapes_run.run_id / "explain"
    assert (folder / f"gradcam-{first.key}.npz").is_file()
    meta = json.loads((folder / f"gradcam-{first.key}.json").read_text())
    assert meta["input_sha"] == sha and meta["signature"] == shapes_run.checkpoint_signature
    assert checkpoint_signature(shapes_run.ws, shapes_run.run_id) == \
        shapes_run.checkpoint_signature  # the torch-free reader finds the same results

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a cached explanation")

    monkeypatch.setattr(explain_runner, "create_explainer", refuse)
    again = explain_input(shapes_run, x, sha, shown, "gradcam")
    assert again.key == first.key and np.array_equal(again.attributions, first.attributions)
    params = effective_params("gradcam", "image")
    found = find_explanation(shapes_run.ws, shapes_run.run_id, sha, "gradcam", params, label)
    assert found is not None and found.key == first.key
    assert load_explanation(shapes_run.ws, shapes_run.run_id, "gradcam", "0" * 24) is None


def test_cli_explain_writes_attributions(shapes_run, samples, tmp_path):
    index, _, label, _ = samples[1]
    path = tmp_path / "in.png"
    load_dataset(shapes_run.ws, "shapes").raw("test", index).save(path)
    out = tmp_path / "attributions.npy"
    proc = run_cli("explain", shapes_run.run_id, str(path), "--method", "ig", "--param",
                   "n_steps=8", "--out", str(out), "--json", home=shapes_run.ws.home)
    payload = json.loads(proc.stdout)
    assert payload["method"] == "ig" and payload["target"] == label
    assert payload["params"]["n_steps"] == 8 and {"similarity", "passed"} <= set(
        payload["sanity"])
    assert np.load(out, allow_pickle=False).shape == (3, SIZE, SIZE)
    bad = run_cli("explain", shapes_run.run_id, str(path), "--method", "deeplift",
                  home=shapes_run.ws.home, check=False)
    assert bad.returncode == 2 and "Choose from" in bad.stderr


# -- tables ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory):
    with Workspace.open(tmp_path_factory.mktemp("explain_wine")) as ws:
        yield load_run(ws, train(ws, "wine", "mlp", epochs=6, batch_size=32))


def test_tabular_shap_adds_up_and_lime_names_conditions(wine_run):
    dataset = load_dataset(wine_run.ws, "wine")
    x = wine_run.preprocess(dataset.raw("test", 0))
    target = int(wine_run.predict_proba(x[None])[0].argmax())
    shap = create_explainer("shap", wine_run, nsamples=512)
    values = shap.explain(x, target)
    assert values.shape == (13,)
    # Expected gradients are (nearly) complete: the values add up to f(x) - E[f(background)].
    gap = shap.extras["output"] - shap.extras["base_value"]
    assert values.sum() == pytest.approx(gap, abs=0.1 + 0.2 * abs(gap))
    lime = create_explainer("lime", wine_run, num_samples=300, num_features=5)
    weights = lime.explain(x, target)
    assert weights.shape == (13,) and (weights != 0).sum() == 5
    named = [c for c in lime.extras["conditions"] if c]
    assert len(named) == 5 and any(n in named[0] for n in wine_run.info.feature_names)


def test_tabular_explanation_and_global_summary(wine_run, tmp_path):
    dataset = load_dataset(wine_run.ws, "wine")
    names = wine_run.info.feature_names
    path = tmp_path / "row.csv"
    path.write_text(",".join(names) + "\n" + ",".join(str(v) for v in dataset.raw("test", 2)))
    x, sha, row = read_input(wine_run, path)
    result = explain_input(wine_run, x, sha, row, "shap", params={"nsamples": 64})
    assert result.row.shape == (13,) and result.deletion["deletion_probs"].shape == (21,)
    assert "similarity" in result.sanity
    summary = explain_summary(wine_run, target=0, rows=20, params={"nsamples": 32})
    assert summary.attributions.shape == (20, 13) and summary.row.shape == (20, 13)
    assert summary.probs.shape == (20, 3)
