"""Explanations on images no one here tuned for: a small coloured square at a random spot on a
noisy background (generated here, imported as a folder dataset, trained briefly).

The class is the square's colour, so the square is the only evidence: every method's map must put
clearly more of its mass inside the square than the square's share of the image. LIME, whose
default SLIC collapses such a noisy image into one superpixel, must never return one constant
value; a flat map from any method (the randomised copy's included) makes the sanity check
"undefined", never "passed", and is left out of means.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import import_dataset
from core.explain import create_explainer
from core.explain.runner import explain_input
from core.explain.segmentation import healthy, segment
from core.explain.trust import (
    SanityCheck,
    defined_mean,
    is_flat,
    saliency,
    sanity_check,
    verdict_of,
)
from core.models.loaded import load_run
from core.workspace import Workspace

SIZE = 32
SIDE = 8  # the square: 1/16 of the image
COLOURS = {"red": (230, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 230)}
PER_CLASS = 60
N_TESTED = 3


def noisy_square(rng: np.random.Generator, colour: tuple[int, int, int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, bool mask of the square)."""
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    y, x = rng.integers(0, SIZE - SIDE + 1, 2)
    image[y:y + SIDE, x:x + SIDE] = colour
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y:y + SIDE, x:x + SIDE] = True
    return image, mask


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """A run trained on the squares, and fresh test images with their masks."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("squares_src")
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for i in range(PER_CLASS):
            Image.fromarray(noisy_square(rng, colour)[0]).save(root / name / f"{i}.png")
    from conftest import train_run

    with Workspace.open(tmp_path_factory.mktemp("squares_ws")) as ws:
        import_dataset(ws, "squares", root)
        run_id = train_run(ws, data={"dataset": "squares", "image_size": SIZE},
                           train={"epochs": 5, "batch_size": 16, "lr": 3e-3})
        loaded = load_run(ws, run_id)
        tested = []
        for k in range(40):
            label = k % len(COLOURS)
            image, mask = noisy_square(rng, list(COLOURS.values())[label])
            x = loaded.preprocess(Image.fromarray(image))
            if loaded.predict_proba(x[None])[0].argmax() == label:
                tested.append((x, label, mask, image))
            if len(tested) == N_TESTED:
                break
        assert len(tested) == N_TESTED, "the model did not learn the squares"
        yield loaded, tested


def mass_ratio(attributions: np.ndarray, mask: np.ndarray) -> float:
    """The map's share of |attribution| inside the mask over the mask's share of the image."""
    s = saliency(attributions)
    return float((s * mask).sum() / max(s.sum(), 1e-12)) / float(mask.mean())


@pytest.mark.parametrize("method,params", [
    ("gradcam", {}), ("ig", {"n_steps": 8}), ("shap", {"nsamples": 16, "background": 8}),
    ("lime", {"num_samples": 150})])
def test_every_method_finds_the_square(squares, method, params) -> None:
    loaded, tested = squares
    explainer = create_explainer(method, loaded, **params)
    ratios = []
    for x, label, mask, _ in tested:
        attributions = explainer.explain(x, label)
        assert not is_flat(attributions), f"{method} returned a flat map"
        ratios.append(mass_ratio(attributions, mask))
    assert np.mean(ratios) > 2.0, (method, ratios)  # a uniform map scores 1


def test_lime_falls_back_from_a_collapsed_slic(squares) -> None:
    loaded, tested = squares
    _, _, _, image = tested[0]
    collapsed, _ = segment(image, 50, 10.0, "slic")
    assert collapsed.max() + 1 <= 2 and not healthy(collapsed, 50)  # what SLIC does here
    lime = create_explainer("lime", loaded, num_samples=100)
    x, label, _, _ = tested[0]
    weights = lime.explain(x, label)
    assert len(np.unique(weights)) > 2 and lime.extras["segmentation"] != "slic"
    assert lime.extras["segments"] >= 8
    assert lime.extras["segment_map"].shape == (SIZE, SIZE)


@pytest.mark.parametrize("size", [8, 31, 224])
def test_the_grid_fits_any_image(size) -> None:
    flat = np.full((size, size, 3), 128, dtype=np.uint8)  # nothing for SLIC to follow
    segments, used = segment(flat, 50, 10.0)
    assert healthy(segments, 50) or used == "grid"
    assert segments.min() == 0 and len(np.unique(segments)) == segments.max() + 1


def test_a_flat_map_is_undefined_never_passed(squares) -> None:
    loaded, tested = squares
    x, label, _, _ = tested[0]
    assert is_flat(np.zeros((1, 4, 4))) and is_flat(np.full((1, 4, 4), 0.3))
    assert is_flat(np.full(5, 0.3) + np.arange(5) * 1e-9) and not is_flat(np.arange(5.0))
    explainer = create_explainer("ig", loaded, n_steps=4)
    # The trained map flat: undefined.
    check, _ = sanity_check(explainer, x, label, np.zeros((1, SIZE, SIZE), np.float32))
    assert check.similarity is None and check.verdict == "undefined" and not check.passed
    # The "randomised" model's map flat: a model whose weights are all zero gives IG a map of
    # zeros. Counting that as "different from the trained map" would pass any map.
    zeroed = copy.deepcopy(loaded.model)
    with torch.no_grad():
        for parameter in zeroed.parameters():
            parameter.zero_()
    real = explainer.explain(x, label)
    assert not is_flat(real) and is_flat(explainer.with_model(zeroed).explain(x, label))
    check, _ = sanity_check_with(explainer, explainer.with_model(zeroed), x, label, real)
    assert check.verdict == "undefined" and not check.passed and "randomised" in check.reason
    stored = check.to_dict()
    assert stored["passed"] is False and verdict_of(stored) == "undefined"
    # An undefined check is left out of a mean, not counted as 0 (which would "pass").
    assert defined_mean([0.9, None, 0.7]) == pytest.approx(0.8)
    assert defined_mean([None, None]) is None


def sanity_check_with(explainer, random_explainer, x, label, attributions
                      ) -> tuple[SanityCheck, np.ndarray]:
    """``sanity_check`` with the randomised copy replaced by ``random_explainer``."""
    original = explainer.with_model
    explainer.with_model = lambda _model: random_explainer
    try:
        return sanity_check(explainer, x, label, attributions)
    finally:
        explainer.with_model = original


def test_a_stored_lime_result_keeps_its_segments(squares) -> None:
    loaded, tested = squares
    x, label, _, image = tested[1]
    result = explain_input(loaded, x, "squares-test-1", image, "lime",
                           params={"num_samples": 60})
    assert result.extras["segmentation"] in ("slic-unconnected", "felzenszwalb", "grid")
    again = explain_input(loaded, x, "squares-test-1", image, "lime",
                          params={"num_samples": 60})
    assert np.array_equal(again.extras["segment_map"], result.extras["segment_map"])
    assert again.sanity["verdict"] in ("passed", "failed", "undefined")
