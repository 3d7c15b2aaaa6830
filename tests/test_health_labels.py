"""Likely label errors: cleanlab's ranking on out-of-sample probabilities, from a real run's
stored validation predictions to a new dataset version without the doubtful samples."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import train_run

from core.cli.main import main
from core.data import load_dataset
from core.data.health import label_report, make_version, rank_label_issues, stored_label_report
from core.errors import InvalidConfig


def test_flipped_digit_labels_are_ranked_first():
    """5% of the training labels flipped on purpose: at least half of them are among the
    finder's first 2x-as-many suggestions (out-of-fold probabilities of a quick model)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(y), int(0.05 * len(y)), replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, len(flipped))) % 10
    probs = cross_val_predict(KNeighborsClassifier(10), x, noisy, cv=5, method="predict_proba")

    ranked = rank_label_issues(noisy, probs)

    top = set(ranked[:2 * len(flipped)].tolist())
    assert len(top & set(flipped.tolist())) >= len(flipped) / 2


def test_a_single_class_is_refused_in_one_line():
    with pytest.raises(InvalidConfig, match="at least 2 classes"):
        rank_label_issues(np.zeros(5, int), np.full((5, 2), 0.5))


@pytest.fixture(scope="module")
def noisy(ws) -> dict:
    """``digits-noisy``: digits with 14 validation labels moved to the next digit, and a run
    trained on it."""
    digits = load_dataset(ws, "digits")
    rng = np.random.default_rng(1)
    positions = rng.choice(digits.size("val"), 14, replace=False)
    relabel = {("val", int(i)): str((int(digits.labels("val")[i]) + 1) % 10) for i in positions}
    make_version(ws, "digits", "digits-noisy", relabel=relabel)
    version = load_dataset(ws, "digits-noisy")
    wrong = {sid for sid in version.ids("val")
             if sid.split("/")[1] != _original_class(digits, sid)}
    run_id = train_run(ws, data={"dataset": "digits-noisy"}, train={"epochs": 2})
    return {"run": run_id, "wrong": wrong}


def _original_class(digits, sid: str) -> str:
    # A version of an in-memory dataset names its files SPLIT-POSITION.png after the original.
    split, position = sid.rsplit("/", 1)[1].removesuffix(".png").split("-")
    return digits.info.classes[int(digits.labels(split)[int(position)])]


def test_a_run_finds_the_flipped_labels_and_excluding_them_makes_a_new_version(ws, noisy,
                                                                                capsys):
    assert len(noisy["wrong"]) == 14
    assert stored_label_report(ws, "digits-noisy", noisy["run"]) is None  # not computed yet

    report = label_report(ws, "digits-noisy", noisy["run"])

    top = [item["id"] for item in report["items"][:28]]
    assert len(set(top) & noisy["wrong"]) >= 7
    assert report["checked"] == load_dataset(ws, "digits-noisy").size("val")
    assert stored_label_report(ws, "digits-noisy", noisy["run"]) == report  # kept, reused
    found = [i for i in report["items"] if i["id"] in noisy["wrong"]]
    assert all(i["suggested"] != i["given"] for i in found)

    argv = ["datasets", "fix", "digits-noisy", "--as", "digits-clean", "--home", str(ws.home),
            "--json"]
    for item in found:
        argv += ["--exclude", item["id"]]
    capsys.readouterr()
    assert main(argv) == 0
    clean = load_dataset(ws, "digits-clean")
    assert not set(clean.ids("val")) & {i["id"] for i in found}
    assert clean.size("val") == load_dataset(ws, "digits-noisy").size("val") - len(found)


def test_a_run_of_another_dataset_is_refused(ws, noisy):
    with pytest.raises(InvalidConfig, match="was trained on 'digits-noisy'"):
        label_report(ws, "digits", noisy["run"])
