"""What only a server-backed store has: a server outage mid-training, `store migrate` between
engines, versioned schemas, and one-line errors when the server is wrong or away. A real
PostgreSQL (``pg_support``), real training processes, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from conftest import ROOT, run_cli, run_json, wait_for

from core.config import RunConfig
from core.runs.store import TERMINAL, Store
from core.workspace import STORE_ENV


def _fill(store: Store) -> list[str]:
    """A small history in ``store``: runs with metrics, events, artifacts, jobs and a setting."""
    ids = []
    for i in range(3):
        cfg = RunConfig().to_dict()
        run = store.create_run(cfg, name=f"r{i}", kind="trained" if i else "cv")
        store.log_metrics(run.id, [(s, k, s * 0.25) for s in range(50) for k in ("a", "b/c")])
        store.add_event(run.id, "started", "é ünïcode ✓", data={"i": i})
        store.add_artifact(run.id, "checkpoint", "checkpoints/best.pt")
        job = store.create_job(run.id, "train", ["-m", "core", "_job"], heavy=True)
        store.set_job_status(job.id, "completed", expect=("queued",), result={"acc": 0.5})
        store.set_status(run.id, "completed", expect=("queued",))
        ids.append(run.id)
    store.set_setting("max_jobs", "3")
    return ids


def test_migrate_round_trip_sqlite_postgresql_sqlite(home, pg_url, tmp_path):
    with Store(home) as store:
        ids = _fill(store)
        events_before = store.get_events(ids[0])
    there = run_json("store", "migrate", "--to", pg_url, home=home)
    assert there["tables"]["metrics"]["rows"] == 300 and there["tables"]["runs"]["rows"] == 3
    # The copy is the workspace's history, read through PostgreSQL by the CLI.
    listed = run_json("runs", "--store", pg_url, home=home)["runs"]
    assert sorted(r["run_id"] for r in listed) == sorted(ids)
    with Store(home, url=pg_url) as pg:
        assert pg.get_events(ids[0]) == events_before
        pg.add_event(ids[0], "more", "after the copy")  # new ids follow the copied ones
        assert [e.kind for e in pg.get_events(ids[0])] == ["started", "more"]
    back = f"sqlite:///{tmp_path / 'back.db'}"
    again = run_json("store", "migrate", "--from", pg_url, "--to", back, home=home)
    assert again["tables"]["metrics"] == there["tables"]["metrics"]
    # Into a store that is not empty: refused, one line, nothing written.
    refused = run_cli("store", "migrate", "--to", pg_url, home=home, check=False)
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 2 and last.startswith("error: ") and "not empty" in last


def test_a_newer_schema_is_refused_in_one_line(home, pg_url):
    with Store(home, url=pg_url) as store:
        store._db.write("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)")
    from core.runs import migrations

    proc = run_cli("runs", "--store", pg_url, home=home, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: the run store {pg_url} has schema version 99, newer than this Lab2Market "
        f"knows ({migrations.LATEST}): upgrade Lab2Market to open it.")


def test_an_unreachable_server_is_one_line(home, pg_server):
    url = f"postgresql://postgres@127.0.0.1:{pg_server.port}/no_such_database"
    proc = run_cli("runs", "--store", url, home=home, check=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "no_such_database" in line and "Traceback" not in (
        proc.stderr)


def test_training_survives_a_5s_server_outage(home, pg_server, pg_url, monkeypatch):
    """The server stops for 5 s mid-training: the job keeps its buffered metrics, writes them
    when the server is back, and completes with every metric row."""
    monkeypatch.setenv(STORE_ENV, pg_url)
    epochs = 4
    run_id = run_json("train", "--dataset", "digits", "--epochs", str(epochs), "--batch-size",
                      "32", "--detach", home=home)["run_id"]
    store = Store(home)
    wait_for(lambda: store.count_metrics(run_id) > 0, timeout=240, interval=0.1,
             message="the first metric rows")
    assert store.get_run(run_id).status == "running"
    pg_server.stop()
    time.sleep(5)
    pg_server.start()
    run = wait_for(lambda: (r := store.get_run(run_id)).status in TERMINAL and r, timeout=300,
                   interval=0.5, message="the run to end")
    assert run.status == "completed", run.error
    series = store.get_metrics(run_id)
    for key in ("train/loss", "val/loss", "val/acc"):
        assert len(series[key]) == epochs, (key, series[key])
    steps = [s for s, _ in series["train/step_loss"]]
    assert steps == sorted(set(steps)) and steps[-1] <= run.total_steps
    job = store.latest_job(run_id, "train")
    assert job.status == "completed"


def test_two_processes_open_a_new_database_at_once(home, pg_url):
    """Migrations run once under the schema lock, whoever opens the store first."""
    code = ("import sys; from core.runs.store import Store; "
            f"s = Store({str(home)!r}, url={pg_url!r}); print(s.count_runs())")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    with Store(home, url=pg_url) as store:
        versions = store._db.query("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in versions] == list(range(1, len(versions) + 1))
    assert json.loads(outs[0][0]) == 0


def test_a_study_on_a_postgresql_store_keeps_its_optuna_study_there(home, pg_url):
    """No --storage: the Optuna study lives in the same PostgreSQL database as the runs, so
    workers on other machines that reach the store reach the study."""
    import optuna

    from core.runs.db import optuna_url

    out = run_json("tune", "--dataset", "digits", "--model", "mlp", "--trials", "1",
                   "--epochs", "1", "--sampler", "random", "--pruner", "none",
                   "--store", pg_url, home=home, timeout=300)
    assert out["state"] == "completed" and out["trials"][0]["state"] == "complete", out
    study = optuna.load_study(study_name=out["study_id"], storage=optuna_url(pg_url))
    assert [t.value for t in study.trials] == [out["trials"][0]["value"]]
    assert not list(home.glob("runs/*/optuna.journal"))  # no file beside it
