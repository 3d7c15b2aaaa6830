"""Tune: studies on Optuna where every trial is a real queued run. Search-space rows and their
one-line errors, seeded sampling, a TPE study that prunes and survives diverging trials, a grid
study, a multi-objective study, and a detached study cancelled, killed, resumed and promoted."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import open_page, run_cli, run_json, train_run, wait_for

from core import runs
from core.cli.main import main
from core.errors import InvalidConfig
from core.runs import reconcile
from core.runs.store import Store
from core.tune import StudySpec, parse_param, trial_runs
from core.tune.driver import objective_values
from core.tune.plots import plot_names, study_figure
from core.tune.space import suggest
from core.tune.study import open_study

DIGITS_MLP = ["--dataset", "digits", "--model", "mlp"]


# -- search space and settings (no training) ------------------------------------------------------


def test_rows_parse_into_typed_params():
    assert parse_param("lr=loguniform:1e-4:0.1").spec == "lr=loguniform:0.0001:0.1"
    assert parse_param("train.batch_size=choice:16,32").choices == (16, 32)
    assert parse_param("augment=choice:none,flip+crop").choices == ("none", "flip+crop")
    assert parse_param("freeze_backbone=choice:true,false").choices == (True, False)
    assert parse_param("epochs=int:1:3").kind == "int"


def test_the_default_space_has_dropout_where_the_model_has_it():
    from core.config import RunConfig
    from core.models import get_spec
    from core.tune.space import default_space

    def names(model: str, pretrained: bool = False) -> set[str]:
        base = RunConfig.from_dict({"model": {"name": model, "pretrained": pretrained}})
        return {p.name for p in default_space(base, "image", get_spec(model))}
    assert "dropout" in names("smallcnn") and "dropout" not in names("resnet18")
    assert "freeze_backbone" in names("resnet18", pretrained=True)
    assert "freeze_backbone" not in names("resnet18")


@pytest.mark.parametrize(("text", "message"), [
    ("lr", "write NAME=KIND:ARGS"),
    ("dataset=choice:digits,wine", "not a tunable config field"),
    ("../../etc=choice:a", "not a tunable config field"),
    ("lr=normal:0:1", "kind must be one of"),
    ("lr=loguniform:0:1", "loguniform needs LOW > 0"),
    ("lr=uniform:0.1:0.01", "LOW must be below HIGH"),
    ("batch_size=uniform:8:64", "not a float field"),
    ("label_smoothing=uniform:0:1", "label_smoothing must be in [0, 1)"),
    ("optimizer=choice:adam,rmsprop", "optimizer takes sgd, adam, adamw"),
    ("augment=choice:none,blur", "joined with +"),
    ("optimizer=choice:adam,adam", "listed twice"),
])
def test_bad_rows_are_one_line_errors(text: str, message: str):
    with pytest.raises(InvalidConfig, match=message.replace("[", r"\[").replace(")", r"\)")) \
            as caught:
        parse_param(text)
    assert "\n" not in str(caught.value)


def spec(sampler: str = "tpe", seed: int = 0, **kw) -> StudySpec:
    rows = ["lr=loguniform:1e-4:1", "optimizer=choice:adam,sgd", "batch_size=choice:16,32"]
    return StudySpec(sampler=sampler, seed=seed, n_trials=8,
                     params=[parse_param(r).to_dict() for r in rows], **kw).validate()


def suggested(study_spec: StudySpec, n: int = 8) -> list[dict]:
    """The params a study with this spec suggests, told a value that depends on them."""
    import optuna

    study = optuna.create_study(direction="maximize", sampler=study_spec.build_sampler())
    found = []
    for _ in range(n):
        trial = study.ask()
        params = suggest(trial, study_spec.space)
        study.tell(trial, -abs(params["lr"] - 0.01) + (params["optimizer"] == "adam"))
        found.append(params)
    return found


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "nsga2"])
def test_the_same_seed_suggests_the_same_trials(sampler: str):
    first = suggested(spec(sampler, seed=7))
    assert suggested(spec(sampler, seed=7)) == first  # past the start-up trials for tpe/cmaes
    assert suggested(spec(sampler, seed=8)) != first


@pytest.mark.parametrize(("kw", "message"), [
    ({"sampler": "grid"}, "grid sampler needs choice: or int: rows"),
    ({"metrics": ["val/acc", "size"], "directions": ["maximize", "minimize"]},
     "prunes single-objective studies only"),
    ({"metrics": ["size"], "directions": ["minimize"]}, "first metric must be one"),
    ({"parallel": 0}, "parallel must be from 1"),
])
def test_bad_study_settings_are_refused(kw: dict, message: str):
    with pytest.raises(InvalidConfig, match=message):
        spec(**kw)


def test_bad_tune_commands_exit_2_with_one_line_and_record_nothing(home: Path, capsys):
    for extra in (["--param", "nope=uniform:0:1"], ["--trials", "0"],
                  ["--sampler", "grid", "--param", "lr=choice:0.1,0.01", "--trials", "3"],
                  ["--metric", "val/acc,latency", "--pruner", "median"]):
        capsys.readouterr()
        assert main(["tune", *DIGITS_MLP, "--home", str(home), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
    with Store(home) as store:
        assert store.list_runs() == []


# -- studies that train ---------------------------------------------------------------------------


def test_a_nan_loss_ends_a_run_early_instead_of_failing_it(workspace):
    """A diverging learning rate (no batch norm to hold it) drives the loss to NaN in epoch 1:
    the run stops there, completed with a poor score, and no NaN reaches the store."""
    run = workspace.store.get_run(train_run(workspace, model={"name": "mlp"}, train={
        "epochs": 2, "optimizer": "sgd", "lr": 1e6}))
    assert run.status == "completed" and run.epoch == 1
    assert "not finite" in run.summary["stop_reason"]


def test_tpe_study_prunes_survives_divergence_and_matches_a_hand_tuned_run(workspace):
    home = workspace.home
    hand = workspace.store.get_run(train_run(workspace, model={"name": "mlp"}, train={
        "epochs": 2, "optimizer": "sgd", "lr": 0.1, "monitor": "val/acc", "mode": "max"}))
    out = run_json("tune", *DIGITS_MLP, "--optimizer", "sgd", "--epochs", "2", "--trials", "8",
                   "--param", "lr=loguniform:1e-3:100", home=home, timeout=900)
    assert out["state"] == "completed" and len(out["trials"]) == 8
    states = [t["state"] for t in out["trials"]]
    assert "failed" not in states, out["trials"]
    assert "pruned" in states
    assert out["best"]["value"] >= hand.best_metric - 0.01  # within 1 point of SGD at lr 0.1
    store = workspace.store
    runs = {r.id: r for r in trial_runs(store, out["study_id"])}
    # Some trials diverged (loss exploding or NaN): each ended poor or pruned, never failed.
    diverged = [r for r in runs.values() if not r.summary["final"]["train/loss"] < 100]
    assert diverged and all(r.status in ("completed", "pruned") for r in diverged)
    for trial in out["trials"]:
        run = runs[trial["run_id"]]
        assert run.kind == "trial" and run.parent_run == out["study_id"]
        assert run.config["train"]["lr"] == pytest.approx(trial["params"]["lr"])
        if trial["state"] == "pruned":  # stopped early, with its own status and checkpoint
            assert run.status == "pruned" and run.epoch < 2 and run.ended_at is not None
            assert (home / "runs" / run.id / "checkpoints" / "last.pt").is_file()
    assert not store.active_jobs() and not store.active_runs()


def test_hyperband_study_reports_every_epoch_and_fails_no_trial(workspace):
    out = run_json("tune", *DIGITS_MLP, "--optimizer", "sgd", "--epochs", "3", "--trials", "3",
                   "--sampler", "random", "--pruner", "hyperband",
                   "--param", "lr=loguniform:1e-3:0.5", home=workspace.home, timeout=600)
    assert out["pruner"] == "hyperband" and out["state"] == "completed"
    assert {t["state"] for t in out["trials"]} <= {"complete", "pruned"}
    study = open_study(workspace.store, out["study_id"], sampler=False)
    for trial in study.get_trials():  # the pruner saw each epoch the trial ran
        run = workspace.store.get_run(trial.user_attrs["run_id"])
        assert sorted(trial.intermediate_values) == list(range(run.epoch))  # steps 0-based


def test_grid_study_enumerates_exactly_its_grid_then_draws_and_deletes(workspace):
    home = workspace.home
    out = run_json("tune", *DIGITS_MLP, "--epochs", "1", "--sampler", "grid",
                   "--param", "lr=choice:0.001,0.01", "--param", "batch_size=choice:32,64",
                   home=home, timeout=600)
    assert out["n_trials"] == 4 and out["state"] == "completed"
    read = run_json("study", out["study_id"], home=home)  # Optuna's record of it, read afresh
    assert (read["trials"], read["best"]) == (out["trials"], out["best"])  # = its driver's report
    seen = sorted((t["params"]["lr"], t["params"]["batch_size"]) for t in out["trials"])
    assert seen == [(0.001, 32), (0.001, 64), (0.01, 32), (0.01, 64)]
    for name in plot_names(multi_objective=False):
        figure = study_figure(workspace.store, out["study_id"], name)
        assert figure.data, name
    listed = run_json("studies", home=home)["studies"]
    assert [s["study_id"] for s in listed] == [out["study_id"]] and listed[0]["trials_ended"] == 4
    status = run_json("status", out["study_id"], home=home)  # a study as `status` shows it
    assert status["best"]["run_id"] == out["best"]["run_id"]
    run_cli("delete", out["study_id"], home=home)  # the study goes with its trials
    assert workspace.store.list_runs() == []


@pytest.mark.parametrize("second", ["size", "latency"])
def test_multi_objective_study_finds_a_pareto_front(workspace, second: str):
    out = run_json("tune", *DIGITS_MLP, "--epochs", "1", "--trials", "2", "--sampler", "nsga2",
                   "--metric", f"val/acc,{second}", "--param", "lr=loguniform:1e-3:1e-2",
                   home=workspace.home, timeout=600)
    assert out["pruner"] == "none" and out["directions"] == ["maximize", "minimize"]
    assert all(len(t["values"]) == 2 and t["values"][1] > 0 for t in out["trials"])
    assert study_figure(workspace.store, out["study_id"], "pareto").data
    run = workspace.store.get_run(out["best"]["run_id"])
    spec_ = StudySpec(metrics=["val/acc", second], directions=["maximize", "minimize"])
    assert objective_values(run, spec_) == pytest.approx(out["best"]["values"])


def test_detached_study_is_cancelled_killed_resumed_and_promoted(home: Path):
    # Enough epochs that no trial can end on its own while the cancel stops the driver, then it
    # (a trial that completes before its cancel arrives is rightly `completed`).
    out = run_json("tune", *DIGITS_MLP, "--epochs", "40", "--batch-size", "16", "--trials", "2",
                   "--sampler", "random", "--pruner", "none",
                   "--param", "lr=loguniform:1e-3:1e-2", "--detach", home=home)
    study_id = out["study_id"]
    assert out["state"] in ("queued", "running")  # readable before its driver made its journal
    store = Store(home)

    def training() -> object:
        return next((t for t in trial_runs(store, study_id)
                     if t.status == "running" and t.epoch >= 1), None)
    first = wait_for(training, timeout=180, interval=0.2, message="a trial past its 1st epoch")

    # In-process (a CLI process would take seconds to start): the driver, then the trial.
    assert runs.cancel(store, study_id).status == "cancelled"
    first = store.get_run(first.id)
    assert first.status == "cancelled" and not store.active_jobs()
    assert (home / "runs" / first.id / "checkpoints" / "last.pt").is_file()

    resumed = run_json("resume", study_id, "--detach", home=home)
    assert resumed["state"] in ("queued", "running")
    twice = run_cli("resume", study_id, home=home, check=False)  # a second click is refused
    assert twice.returncode == 2 and "cancel it before resuming" in twice.stderr
    wait_for(lambda: store.get_run(first.id).status in ("running", "completed"), timeout=120,
             interval=0.2)  # the new driver resumed the cancelled trial
    driver = next(j for j in store.active_jobs(study_id) if j.kind == "tune")
    os.kill(driver.pid, signal.SIGKILL)
    wait_for(lambda: reconcile(store) is not None and
             store.get_run(study_id).status == "interrupted", timeout=60, interval=0.2)

    done = run_json("resume", study_id, "--trials", "1", home=home, timeout=600)  # blocking
    assert done["state"] == "completed" and done["n_trials"] == 3
    assert [t["state"] for t in done["trials"]] == ["complete"] * 3
    assert done["trials"][0]["run_id"] == first.id  # resumed in its own run, not re-run
    assert store.get_run(first.id).epoch == 40
    # Each driver's sampler goes on from the trials before it: no params are tried twice.
    assert len({t["params"]["lr"] for t in done["trials"]}) == 3

    promoted = run_cli("promote", study_id, "--epochs", "1", home=home).stdout.strip()
    run = store.get_run(promoted)
    assert run.kind == "trained" and run.config["train"]["epochs"] == 1
    assert run.config["train"]["lr"] == pytest.approx(done["best"]["params"]["lr"])
    assert run.summary["promoted_from"]["study"] == study_id
    # Leave nothing running. Its one epoch of digits may end before the cancel arrives: a warm
    # command and a warm job both start in tens of milliseconds (then it rightly completed).
    # A cancel that comes after the end is refused with a true status (exit 2), not obeyed.
    cancel = run_cli("cancel", promoted, home=home, check=False)
    assert cancel.returncode == 0 or (
        cancel.returncode == 2 and "is completed" in cancel.stderr), cancel.stderr
    assert store.get_run(promoted).status in ("cancelled", "completed")
    store.close()


def test_study_commands_refuse_a_run_that_is_not_a_study(workspace, capsys):
    from core.config import RunConfig

    run_id = runs.create_run(workspace.store, RunConfig()).id  # a plain run, never trained
    home = str(workspace.home)
    for args in (["study", run_id], ["promote", run_id], ["_tune", run_id]):
        capsys.readouterr()
        assert main([*args, "--home", home]) == 2
        assert "is a trained run, not a study" in capsys.readouterr().err
    assert not (workspace.home / "runs" / run_id / "driver.lock").exists()
    assert main(["studies", "--json", "--home", home]) == 0
    assert json.loads(capsys.readouterr().out) == {"studies": []}


def test_a_damaged_journal_is_one_line_everywhere_and_nothing_is_touched(home: Path):
    out = run_json("tune", "--dataset", "iris", "--model", "mlp", "--epochs", "1", "--trials",
                   "1", home=home, timeout=600)
    study_id, store = out["study_id"], Store(home)
    journal = home / "runs" / study_id / "optuna.journal"
    good = journal.read_bytes()
    drawn = study_figure(store, study_id, "history")
    assert study_figure(store, study_id, "history") is drawn  # nothing changed: not drawn again
    lines = good.splitlines(keepends=True)
    damaged = b"".join([*lines[:2], b"{not json\n", *lines[2:]])  # an edit gone wrong
    journal.write_bytes(damaged)
    jobs = len(store.list_jobs(run_id=study_id))

    for args in (["resume", study_id, "--trials", "1"], ["status", study_id]):
        proc = run_cli(*args, home=home, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"error: Study {study_id}'s Optuna journal (runs/{study_id}/optuna.journal) is "
            f"damaged at line 3 of {len(lines) + 1} (not a JSON record); its trial runs are "
            "intact. Restore the file, or remove that line (Optuna then forgets what it "
            "recorded)."]
    at = open_page("pages/tune.py", tune_study=study_id)  # the page says so, and still works
    assert [e.value for e in at.error if "damaged at line 3" in e.value]
    # Nothing was started or changed: the refused resume queued no driver, wrote no file.
    assert journal.read_bytes() == damaged and len(store.list_jobs(run_id=study_id)) == jobs
    assert store.get_run(study_id).status == "completed"

    # A torn last line (a writer killed mid-write) is cut off by a resume, not joined to the next
    # record; with the bad line removed, the study goes on where it was.
    journal.write_bytes(good + b'{"op_code":5,"worker_id":"x')
    done = run_json("resume", study_id, "--trials", "1", home=home, timeout=600)
    assert done["state"] == "completed" and [t["state"] for t in done["trials"]][0] == "complete"
    assert len(done["trials"]) == 2
    redrawn = study_figure(store, study_id, "history")  # a trial more: drawn anew
    assert redrawn is not drawn and len(redrawn.data[0].x) == 2
    assert journal.read_bytes().startswith(good) and b'"worker_id":"x' not in journal.read_bytes()
    store.close()
