"""MLflow and TensorBoard sinks: the same metric values as the run store, read back with each
tool's own reader; a dead tracking server warns and the run completes; ``runs export``; the
workspace setting and its per-run ``off``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import free_port, run_cli, train_run

from core.train.callbacks import Callback
from core.train.sinks import RUN_TAG, set_workspace_target
from core.workspace import Workspace

SMALL = {"data": {"dataset": "wine"}, "model": {"name": "mlp"}}  # fast: 107 training rows
COMPARED = ("train/loss", "train/acc", "val/loss", "val/acc", "train/step_loss", "lr",
            "sys/cpu_percent", "sys/ram_mb")


@pytest.fixture(autouse=True)
def _file_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow 3 keeps its file store behind this opt-out (it prefers a database backend).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def store_series(ws: Workspace, run_id: str) -> dict[str, dict[int, float]]:
    return {k: dict(v) for k, v in ws.store.get_metrics(run_id, keys=COMPARED).items()}


def mlflow_run(uri: str, run_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lab2market")
    found = client.search_runs([exp.experiment_id], f"tags.`{RUN_TAG}` = '{run_id}'")
    assert len(found) == 1
    return client, found[0]


def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_mlflow_and_tensorboard_hold_the_run_stores_values(ws: Workspace, tmp_path: Path):
    uri, tb = (tmp_path / "mlruns").as_uri(), tmp_path / "tb"
    run_id = train_run(ws, **SMALL, train={"epochs": 3, "batch_size": 16, "mlflow": uri,
                                           "tensorboard": str(tb), "resource_every": 0.05})
    stored = store_series(ws, run_id)
    assert {"train/loss", "val/acc", "train/step_loss", "sys/ram_mb"} <= stored.keys()

    client, found = mlflow_run(uri, run_id)
    assert found.info.status == "FINISHED"
    assert found.data.params["train.epochs"] == "3" and found.data.params["data.dataset"] == \
        "wine"
    for key, points in stored.items():
        history = {m.step: m.value for m in client.get_metric_history(found.info.run_id, key)}
        assert history == points, key  # exact: MLflow keeps float64
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/best.pt"}

    scalars = tensorboard_scalars(tb / run_id)
    for key, points in stored.items():
        assert scalars[key].keys() == points.keys(), key
        for step, value in points.items():  # TensorBoard keeps float32
            assert scalars[key][step] == pytest.approx(value, rel=1e-6), (key, step)
    assert (tb / run_id / "hparams").is_dir()


def test_a_dead_tracking_server_warns_and_the_run_completes(ws: Workspace):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    run_id = train_run(ws, **SMALL, train={"epochs": 1, "mlflow": dead, "resource_every": 0})
    assert ws.store.get_run(run_id).status == "completed"
    warnings = ws.store.get_events(run_id, kind="sink")
    assert len(warnings) == 1 and warnings[0].level == "warning"
    assert dead in warnings[0].message and "\n" not in warnings[0].message
    assert time.monotonic() - started < 120  # retries are capped (MLflow's default: minutes)


def test_workspace_setting_applies_unless_a_run_says_off(ws: Workspace, tmp_path: Path):
    tb = tmp_path / "ws-tb"
    set_workspace_target(ws.store, "tensorboard", str(tb))
    try:
        logged = train_run(ws, **SMALL, train={"epochs": 1, "resource_every": 0})
        quiet = train_run(ws, **SMALL, train={"epochs": 1, "resource_every": 0,
                                              "tensorboard": "off"})
    finally:
        set_workspace_target(ws.store, "tensorboard", "off")
    assert (tb / logged).is_dir() and not (tb / quiet).exists()


def test_runs_export_sends_a_finished_run_to_mlflow(ws: Workspace, tmp_path: Path):
    run_id = train_run(ws, **SMALL, train={"epochs": 1, "resource_every": 0})
    uri = (tmp_path / "exported").as_uri()
    out = run_cli("runs", "export", run_id, "--to", "mlflow", uri, "--json", home=ws.home)
    payload = json.loads(out.stdout)
    client, found = mlflow_run(uri, run_id)
    assert found.data.tags["lab2market.source"] == "export"
    for key, points in store_series(ws, run_id).items():
        history = {m.step: m.value for m in client.get_metric_history(found.info.run_id, key)}
        assert history == points, key
    assert payload["metrics"] == sum(len(v) for v in ws.store.get_metrics(run_id).values())

    bad = run_cli("runs", "export", run_id, "--to", "wandb", "x", home=ws.home, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: Unknown tracker")


def test_a_tracking_uri_that_is_not_one_is_refused_in_one_line(home: Path):
    out = run_cli("train", "--dataset", "iris", "--mlflow", "mlruns", home=home, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: mlflow must be a tracking URI (http://HOST:PORT, file:///DIR, sqlite:///FILE) "
        "or off; got 'mlruns'"]
    assert not (home / "runs").exists() or not list((home / "runs").iterdir())


class Fault(Callback):
    """A run that goes wrong after its first epoch: an error, or a stop (a cancel)."""

    def __init__(self, how: str):
        self.how = how

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        if epoch == 0 and self.how == "error":
            raise RuntimeError("planted fault after epoch 1")
        if epoch == 0:
            trainer.request_stop()  # what SIGTERM (cancel) does


@pytest.mark.parametrize(("how", "status", "mlflow_status"),
                         [("error", "failed", "FAILED"), ("stop", "cancelled", "KILLED")])
def test_a_run_that_fails_or_is_cancelled_ends_its_tracker_runs(ws: Workspace, tmp_path: Path,
                                                                 how, status, mlflow_status):
    from core.config import RunConfig
    from core.runs import create_run
    from core.train import execute_run

    uri, tb = (tmp_path / "mlruns").as_uri(), tmp_path / "tb"
    raw = RunConfig().to_dict()
    raw.update({k: {**raw[k], **v} for k, v in SMALL.items()})
    raw["train"].update(epochs=3, batch_size=16, resource_every=0, mlflow=uri,
                        tensorboard=str(tb))
    run = create_run(ws.store, RunConfig.from_dict(raw))

    summary = execute_run(ws, run.id, callbacks=[Fault(how)])

    assert summary["status"] == ws.store.get_run(run.id).status == status
    client, found = mlflow_run(uri, run.id)
    assert found.info.status == mlflow_status  # not left RUNNING
    assert found.info.end_time is not None
    stored = store_series(ws, run.id)
    assert "val/acc" in stored  # the first epoch's metrics, sent before the run ended
    for key, points in stored.items():
        history = {m.step: m.value for m in client.get_metric_history(found.info.run_id, key)}
        assert history == points, key
    assert (tb / run.id / "hparams").is_dir()  # the TensorBoard writer was closed too
