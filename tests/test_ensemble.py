"""Ensembles of runs: the combiners' arithmetic, fitting on val only, evaluating and predicting
with an ensemble run like any run, the CLI, and the Evaluate page on one.

Three weak digits runs (one epoch, different seeds; one at another input size) are shared by
the module; each ensemble on them takes seconds.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import open_page, train_run

from core.analyze import combiners
from core.analyze import evaluate as ev
from core.analyze.ensemble import combiner_path, create_ensemble, diversity
from core.errors import InvalidConfig


@pytest.fixture(scope="module")
def members(ws) -> list[str]:
    """Digits runs with seeds 0-2 (conftest's ``resized`` and ``ensembles`` build on them)."""
    return [train_run(ws, train={"seed": seed}) for seed in (0, 1, 2)]


def accuracy(preds: ev.Predictions) -> float:
    return float((preds.probs.argmax(axis=1) == preds.y_true).mean())


# -- the combiners, by hand -------------------------------------------------------------------


def test_hard_vote_is_the_majority_of_argmaxes_ties_broken_by_the_soft_mean():
    p = np.array
    a = p([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])
    b = p([[0.5, 0.4, 0.1], [0.2, 0.2, 0.6], [0.1, 0.5, 0.4], [0.4, 0.3, 0.3]])
    c = p([[0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.05, 0.05, 0.9], [0.3, 0.65, 0.05]])
    out = combiners.combine({"method": "hard"}, [a, b, c])
    # votes 0,0,1 -> 0 (though class 1 has the highest soft mean); 1,2,2 -> 2; 0,1,2 -> a
    # three-way tie won by the highest soft mean (class 2: 1.40/3); 2,0,1 -> a tie won by
    # class 1 (soft sums 0.80, 1.15, 1.05)
    assert out.argmax(axis=1).tolist() == [0, 2, 2, 1]
    assert np.allclose(out.sum(axis=1), 1.0) and (out > 0).all()


def test_weighted_fit_is_convex_and_prefers_the_better_member():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    good = np.full((400, 4), 0.1)
    good[np.arange(400), y] = 0.7
    noise = rng.dirichlet(np.ones(4), 400)
    w = combiners.fit_weights([noise, good, noise[::-1]], y)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-9)
    assert w[1] > 0.9


def test_stacking_refuses_classes_too_rare_in_val():
    probs = [np.full((5, 3), 1 / 3)] * 2
    with pytest.raises(InvalidConfig, match="at least 2 validation samples"):
        combiners.fit_stacking(probs, np.array([0, 0, 1, 1, 2]))


# -- fitting never reads the test split --------------------------------------------------------


def test_fitting_reads_only_the_val_split(ws, members, monkeypatch):
    for m in members:  # the test predictions exist: a fit that read them would find them
        ev.evaluate(ws, m, "test")
    requested, read = [], []
    evaluate, read_predictions = ev.evaluate, ev.read_predictions

    def spy_evaluate(ws_, run_id, split="test", *args, **kwargs):
        requested.append(split)
        return evaluate(ws_, run_id, split, *args, **kwargs)

    def spy_read(path):
        read.append(str(path))
        return read_predictions(path)

    monkeypatch.setattr(ev, "evaluate", spy_evaluate)
    monkeypatch.setattr(ev, "read_predictions", spy_read)
    for method in ("weighted", "stacking"):
        create_ensemble(ws, members, method)
    assert requested and set(requested) == {"val"}
    assert read and not [p for p in read if "test" in p.rsplit("/", 1)[-1]]


# -- an ensemble is a run like any other ----------------------------------------------------------


def test_ensembles_of_weak_runs_beat_their_members(ws, members, ensembles):
    """Stacking beats the best member on test (on these one-epoch runs, by 2-5 points on every
    seed tried: the members are under-confident and it recalibrates them). Soft and weighted
    voting beat the average member, but not always the best one (when one member is much
    better than the others, averaging it with them can cost a few test samples)."""
    member_acc = [accuracy(ev.evaluate(ws, m, "test")) for m in members]
    ensemble_acc = {k: accuracy(ev.evaluate(ws, e, "test")) for k, e in ensembles.items()}
    assert ensemble_acc["stacking"] >= max(member_acc)
    for method in ("soft", "weighted", "hard"):
        assert ensemble_acc[method] >= np.mean(member_acc), method


def val_log_loss(ws, run_id: str) -> float:
    preds = ev.evaluate(ws, run_id, "val")
    return float(-np.log(preds.probs[np.arange(len(preds)), preds.y_true]).mean())


def test_weighted_voting_fits_the_val_log_loss_at_least_as_well_as_soft(ws, members, ensembles):
    assert val_log_loss(ws, ensembles["weighted"]) <= val_log_loss(ws, ensembles["soft"]) + 1e-9


def test_the_combiner_is_stored_as_json_with_convex_weights(ws, members, ensembles):
    for method, run_id in ensembles.items():
        stored = json.loads(combiner_path(ws, run_id).read_text())
        w = np.asarray(stored["weights"])
        assert stored["method"] == method and stored["members"] == members
        assert stored["fitted_on"]["split"] == "val"
        assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-9)
        run = ws.store.get_run(run_id)
        assert (run.kind, run.parent_run, run.status) == ("ensemble", members[0], "completed")
        assert run.config["ensemble"] == {"members": members, "method": method}
    assert "coef" in json.loads(combiner_path(ws, ensembles["stacking"]).read_text())["stacking"]


def test_evaluate_stores_the_combined_predictions_like_any_run(ws, members, ensembles):
    preds = ev.evaluate(ws, ensembles["soft"], "test")
    again = ev.read_predictions(ev.eval_path(ws, ensembles["soft"], "test"))
    assert ev.is_fresh(ws, ensembles["soft"], "test")
    np.testing.assert_array_equal(again.y_true, preds.y_true)
    member_probs = [ev.evaluate(ws, m, "test").probs for m in members]
    np.testing.assert_allclose(again.probs, np.mean(member_probs, axis=0), atol=1e-12)
    np.testing.assert_allclose(ev.summarize(again)["overall"]["accuracy"], accuracy(preds))


def test_predicting_files_combines_members_of_different_input_sizes(ws, members, resized):
    from core.analyze.predict import predict_files
    from core.data import load_dataset
    from core.models.loaded import load_run

    dataset = load_dataset(ws, "digits")
    files = []
    for i in range(5):
        buf = io.BytesIO()
        dataset.raw("test", i).save(buf, format="PNG")
        files.append((f"{i}.png", buf.getvalue()))
    files.append(("broken.png", b"not an image"))
    trio = [*members[:2], resized]
    ensemble_id = create_ensemble(ws, trio, "weighted").id
    results = predict_files(load_run(ws, ensemble_id), files)
    assert not results[-1].ok and all(r.ok for r in results[:-1])
    stored = json.loads(combiner_path(ws, ensemble_id).read_text())
    expected = np.tensordot(stored["weights"], [
        np.stack([r.probs for r in predict_files(load_run(ws, m), files[:-1])])
        for m in trio], axes=1)
    np.testing.assert_allclose(np.stack([r.probs for r in results[:-1]]), expected, atol=1e-6)


def test_members_of_different_datasets_are_refused(ws, members):
    from core.config import RunConfig
    from core.runs import create_run

    other = create_run(ws.store, RunConfig.from_dict({"data": {"dataset": "iris"},
                                                      "model": {"name": "mlp"}}))
    with pytest.raises(InvalidConfig, match="share one dataset"):
        create_ensemble(ws, [members[0], other.id])
    with pytest.raises(InvalidConfig, match="at least two"):
        create_ensemble(ws, members[:1])


def test_the_cli_prints_members_ensemble_and_disagreement(ws, members, capsys):
    from core.cli.main import main

    code = main(["ensemble", *members, "--method", "weighted", "--name", "trio", "--json",
                 "--home", str(ws.home)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["kind"] == "ensemble" and out["name"] == "trio"
    assert set(out["member_accuracy"]) == set(members) and out["split"] == "test"
    d = np.asarray(out["disagreement"])
    assert d.shape == (3, 3) and np.allclose(np.diag(d), 0) and np.allclose(d, d.T)
    assert out == {**diversity(ws, out["run_id"]), **{k: out[k] for k in (
        "run_id", "name", "kind", "parent_run", "status")}}


def test_the_evaluate_page_shows_an_ensemble(ws, ensembles):
    run_id = ensembles["stacking"]
    for split in ("val", "test"):
        ev.evaluate(ws, run_id, split)
    at = open_page("pages/evaluate.py", active_run=run_id)
    assert at.multiselect(key="eval_runs").value == [run_id]
    shown = {m.label: m.value for m in at.metric}
    assert shown["Accuracy"] == f"{accuracy(ev.evaluate(ws, run_id, 'test')):.4f}"
