"""What only a server-backed store has: a server outage mid-training, `store migrate` between
engines, versioned schemas, and one-line errors when the server is wrong or away. A real
PostgreSQL (``pg_support``), real training processes, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from conftest import ROOT, assert_clean, open_page, run_cli, run_json, wait_for
from pg_support import CommitDropper

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


def test_a_reply_lost_after_the_commit_is_not_written_twice(home, pg_server):
    """The server commits, the connection drops before the client hears it, the client retries:
    the retry asks the server whether it had committed, so a compare-and-set still reports it
    won, an event is not doubled; a batch of metric rows (an upsert) is simply written again."""
    proxy = CommitDropper(pg_server.port)
    pg_server.database("lost_commit")
    with Store(home, url=proxy.url(pg_server, "lost_commit")) as store:
        run = store.create_run(RunConfig().to_dict())
        proxy.arm("COMMIT")
        assert store.set_status(run.id, "running", expect=("queued",)) is True
        proxy.arm("COMMIT")
        store.add_event(run.id, "note", "once")
        proxy.arm("INSERT 0 10")
        store.log_metrics(run.id, [(s, "train/loss", s / 10) for s in range(10)])
        assert proxy.dropped == 3
        assert store.get_run(run.id).status == "running"
        assert [e.message for e in store.get_events(run.id, kind="note")] == ["once"]
        assert store.get_metrics(run.id)["train/loss"] == [(s, s / 10) for s in range(10)]
    proxy.close()


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


# -- the executor control on Home ------------------------------------------------------------------


def _apply_executor(at, name: str, address: str | None = None):
    at.session_state["home_executor_panel"] = True  # the expander opened
    at.run().radio(key="home_executor").set_value(name)
    if address is not None:
        at.text_input(key="home_ray_address").set_value(address)
    at.button(key="FormSubmitter:home_executor_form-Apply").click().run()
    return at


def test_home_refuses_ray_with_a_sqlite_store_in_one_line(home, monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)
    at = _apply_executor(open_page("pages/home.py"), "ray")
    assert_clean(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("--executor ray needs a PostgreSQL run store")
    assert "\n" not in errors[0]
    with Store(home) as store:
        assert store.get_setting("executor") is None  # nothing stored


def test_home_switches_to_ray_on_a_postgresql_store(home, pg_url, monkeypatch):
    monkeypatch.setenv(STORE_ENV, pg_url)
    at = open_page("pages/home.py")
    assert [x.label for x in at.expander if x.label.startswith("Jobs run on")] == [
        "Jobs run on local processes"]
    at = _apply_executor(at, "ray", " http://127.0.0.1:8265 ")
    assert_clean(at)
    assert not at.error
    assert "Jobs run on Ray at http://127.0.0.1:8265" in [x.label for x in at.expander]
    # The same setting the CLI reads and writes.
    shown = run_json("executor", home=home)
    assert (shown["executor"], shown["ray_address"]) == ("ray", "http://127.0.0.1:8265")
    at = _apply_executor(at, "local")
    assert "Jobs run on local processes" in [x.label for x in at.expander]
