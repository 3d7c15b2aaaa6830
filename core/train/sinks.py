"""Optional sinks: a run's params, metrics and artifacts also go to MLflow and TensorBoard.

Off by default. A run's ``train.mlflow`` / ``train.tensorboard`` names the target; unset, the
workspace setting (``trackers --mlflow URI``) applies; ``off`` turns it off for that run. The
official clients do the writing (``mlflow.tracking.MlflowClient`` of mlflow-skinny,
``torch.utils.tensorboard.SummaryWriter``). A sink that fails (server down, disk full) logs one
warning, records a warning event on the run and goes quiet: it never fails or stalls the run.
Metrics are sent in batches (at most every ``every_s`` seconds, and at each epoch end), so a
slow tracking server costs one request per batch, not one per step. The resource monitor's
readings (``sys/*``, ``gpu*/*``) go out with the metrics. A tracker run ends as its run does:
FINISHED, KILLED (cancelled, interrupted) or FAILED, also when the run ends by an exception
(``end_sinks``); only a killed process (``kill -9``) leaves it RUNNING until a resume.

``export_run`` sends a finished run from the store to a tracker the same way.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import RunConfig
from core.errors import InvalidConfig, UserError
from core.train.callbacks import Callback
from core.train.monitor import ResourceMonitor

if TYPE_CHECKING:
    from core.runs.store import Store
    from core.train.trainer import Trainer
    from core.workspace import Workspace

log = logging.getLogger(__name__)
TRACKERS = ("mlflow", "tensorboard")
OFF = "off"
SETTING = "tracker.{}"  # workspace setting keys: tracker.mlflow, tracker.tensorboard
EXPERIMENT = "lab2market"  # MLflow experiment, unless $MLFLOW_EXPERIMENT_NAME names another
RUN_TAG = "lab2market.run_id"
# A run's end as an MLflow run status; anything else (failed) is FAILED. An interrupted run can
# be resumed: its MLflow run (found by its tag) is set RUNNING again then.
MLFLOW_STATUS = {"completed": "FINISHED", "cancelled": "KILLED", "interrupted": "KILLED",
                 "pruned": "KILLED"}
MAX_GRAPH_PARAMS = 5_000_000  # a bigger model's graph trace costs more than it shows
Row = tuple[int, str, float]  # (step, key, value)


# -- targets -------------------------------------------------------------------------------------


def resolve_target(store: Store, config: RunConfig, tracker: str) -> str | None:
    """The run's own target, else the workspace's; None when off."""
    value = getattr(config.train, tracker)
    if value is None:
        value = store.get_setting(SETTING.format(tracker))
    return None if not value or value == OFF else value


def check_target(tracker: str, value: str) -> str:
    """``value`` as stored (empty: ``off``), checked by the run config's own rule."""
    if tracker not in TRACKERS:
        raise InvalidConfig(f"Unknown tracker {tracker!r}: {', '.join(TRACKERS)}.")
    value = value.strip() or OFF
    probe = RunConfig()  # one copy of the rule: an MLflow URI, not a bare path
    setattr(probe.train, tracker, value)
    probe.validate()
    return value


def set_workspace_target(store: Store, tracker: str, value: str) -> None:
    """Every run of the workspace logs to ``value`` unless it says otherwise (``off``: none)."""
    store.set_setting(SETTING.format(tracker), check_target(tracker, value))


# -- the writers ---------------------------------------------------------------------------------


class MlflowWriter:
    """One lab2market run as one MLflow run (found again by its tag on resume)."""

    def __init__(self, uri: str, run_id: str, home: Path | None = None):
        # A dead server must cost seconds, not MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        self.uri, self.run_id = uri, run_id
        self.client = MlflowClient(tracking_uri=uri)
        self.mlflow_run: str | None = None

    def start(self, params: dict[str, Any], tags: dict[str, str], resume: bool,
              name: str = "") -> None:
        name_of_experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        exp = self.client.get_experiment_by_name(name_of_experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(name_of_experiment)
        found = self.client.search_runs([exp_id], f"tags.`{RUN_TAG}` = '{self.run_id}'",
                                        max_results=1) if resume else []
        if found:
            self.mlflow_run = found[0].info.run_id
            self.client.update_run(self.mlflow_run, status="RUNNING")
            return
        run = self.client.create_run(exp_id, run_name=name or self.run_id,
                                     tags={RUN_TAG: self.run_id, **tags})
        self.mlflow_run = run.info.run_id
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's cap on params per batch
            self.client.log_batch(self.mlflow_run, params=items[i:i + 100])

    def log(self, rows: Sequence[Row]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, int(step)) for step, key, value in rows]
        for i in range(0, len(metrics), 1000):  # MLflow's cap on metrics per batch
            self.client.log_batch(self.mlflow_run, metrics=metrics[i:i + 1000])

    def artifacts(self, files: Iterable[tuple[Path, str]]) -> None:
        for path, folder in files:
            self.client.log_artifact(self.mlflow_run, str(path), folder)

    def finish(self, status: str, final: dict[str, float] | None = None) -> None:
        self.client.set_terminated(self.mlflow_run, MLFLOW_STATUS.get(status, "FAILED"))


class TensorBoardWriter:
    """Scalars under ``DIR/<run id>``, hparams beside them, the graph of small models."""

    def __init__(self, folder: str, run_id: str, home: Path | None = None):
        from torch.utils.tensorboard import SummaryWriter

        base = Path(folder).expanduser()
        # A relative folder is inside the workspace: a job's working folder is not the user's.
        self.folder = (base if base.is_absolute() or home is None else home / base) / run_id
        self._writer_class = SummaryWriter
        self.writer: Any = None

    def start(self, params: dict[str, Any], tags: dict[str, str], resume: bool,
              name: str = "", step: int = 0) -> None:
        # A resume redoes the steps after its checkpoint: TensorBoard drops the old ones.
        self.writer = self._writer_class(str(self.folder), purge_step=step if resume else None)
        self.params = params
        self.writer.add_text("lab2market", "  \n".join(f"{k}: {v}" for k, v in tags.items()))

    def log(self, rows: Sequence[Row]) -> None:
        for step, key, value in rows:
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def graph(self, model: Any, example: Any) -> None:
        self.writer.add_graph(model, example)

    def artifacts(self, files: Iterable[tuple[Path, str]]) -> None:
        pass  # TensorBoard has no artifact store

    def finish(self, status: str, final: dict[str, float] | None = None) -> None:
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                   for k, v in self.params.items()}
        metrics = {f"hparam/{k}": v for k, v in (final or {}).items()}
        self.writer.add_hparams(hparams, metrics, run_name="hparams")
        self.writer.close()


WRITERS = {"mlflow": MlflowWriter, "tensorboard": TensorBoardWriter}


# -- the callback --------------------------------------------------------------------------------


class TrackerSink(Callback):
    """Mirrors the trainer's metrics into one writer; failures warn once and never propagate."""

    def __init__(self, store: Store, run_id: str, tracker: str, target: str, every_s: float = 10):
        self.store, self.run_id, self.tracker, self.target = store, run_id, tracker, target
        self.every_s = every_s
        self.writer: Any = None
        self._pending: list[Row] = []
        self._last = 0.0
        self.failed = False
        self._monitors: list[ResourceMonitor] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        # The machine's readings (sys/*, gpu*/*) reach the tracker as they reach the store.
        self._monitors = [cb for cb in trainer.callbacks if isinstance(cb, ResourceMonitor)]
        for monitor in self._monitors:
            monitor.listeners.append(self._add)

        def start() -> None:
            run = self.store.get_run(self.run_id)
            self.writer = WRITERS[self.tracker](self.target, self.run_id, self.store.home)
            kwargs = {"step": trainer.step} if self.tracker == "tensorboard" else {}
            self.writer.start(params_of(trainer.config), tags_of(run), resume=trainer.step > 0,
                              name=run.name, **kwargs)
            if self.tracker == "tensorboard":
                _add_graph(self.writer, trainer)
        self._guard(start)
        self._last = time.monotonic()

    def on_batch_end(self, trainer: Trainer, step: int, loss: float | None) -> None:
        if self.failed:
            return
        if loss is not None:
            self._pending.append((step, "train/step_loss", loss))
        if self._pending and time.monotonic() - self._last >= self.every_s:
            self._flush()

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self.failed:
            return
        self._pending.extend((trainer.step, k, v) for k, v in metrics.items() if _finite(v))
        self._flush()

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        if self.failed:
            return
        for monitor in self._monitors:  # its last readings, before the tracker run ends
            monitor.drain()
        self._flush()
        files = run_files(trainer.run_dir)
        self._guard(lambda: self.writer.artifacts(files))
        self._end(summary["status"], summary.get("final"))

    def end_after_failure(self, status: str) -> None:
        """The run ended by an exception (no ``on_fit_end``): what is pending goes out and the
        tracker run ends ``status`` (FAILED, or KILLED for a resumable one), not RUNNING."""
        if self.writer is None or self.failed:
            return
        self._flush()
        self._end(status, None)

    def _add(self, rows: list[Row]) -> None:
        if not self.failed:
            self._pending.extend(rows)

    def _end(self, status: str, final: dict[str, float] | None) -> None:
        self._guard(lambda: self.writer.finish(status, final))
        self.writer = None  # ended once: a second end is a no-op

    def _flush(self) -> None:
        rows, self._pending = self._pending, []
        self._last = time.monotonic()
        if rows:
            self._guard(lambda: self.writer.log(rows))

    def _guard(self, action) -> None:
        if self.failed:
            return
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a tracker never fails the run
            self.failed = True
            message = (f"{self.tracker} sink at {self.target} failed and is off for the rest "
                       f"of this run: {_one_line(exc)}")
            log.warning(message)
            try:
                self.store.add_event(self.run_id, "sink", message, level="warning")
            except Exception:  # noqa: BLE001 - the warning is in the log already
                pass


def end_sinks(callbacks: Iterable[Callback], status: str) -> None:
    """End the tracker runs of a run that failed (or was interrupted) by an exception."""
    for callback in callbacks:
        if isinstance(callback, TrackerSink):
            callback.end_after_failure(status)


def build_sinks(ws: Workspace, run_id: str, config: RunConfig) -> list[Callback]:
    """The sinks this run logs to (none by default)."""
    sinks: list[Callback] = []
    for tracker in TRACKERS:
        target = resolve_target(ws.store, config, tracker)
        if target:
            sinks.append(TrackerSink(ws.store, run_id, tracker, target))
    return sinks


# -- what goes out -------------------------------------------------------------------------------


def params_of(config: RunConfig) -> dict[str, Any]:
    """The config flattened: ``train.lr``, ``data.dataset``, ... (sinks and paths left out)."""
    flat = {}
    for section, values in config.to_dict().items():
        for name, value in values.items():
            if name not in TRACKERS:
                flat[f"{section}.{name}"] = "none" if value is None else (
                    ",".join(value) if isinstance(value, list) else value)
    return flat


def tags_of(run: Any) -> dict[str, str]:
    return {"lab2market.dataset": run.dataset, "lab2market.model": run.model,
            "lab2market.kind": run.kind}


def run_files(folder: Path) -> list[tuple[Path, str]]:
    """The final checkpoint (best, else last) and every ONNX export, with their folder."""
    checkpoints = folder / "checkpoints"
    best = next((p for p in (checkpoints / "best.pt", checkpoints / "last.pt") if p.is_file()),
                None)
    files = [(best, "checkpoints")] if best else []
    files += [(p, f"export/{p.parent.name}") for p in sorted(folder.glob("export/*/*.onnx"))]
    return files


def _add_graph(writer: TensorBoardWriter, trainer: Trainer) -> None:
    """The model graph, only where it is cheap: a small model, one sample (errors ignored)."""
    model = trainer.raw_model
    if sum(p.numel() for p in model.parameters()) > MAX_GRAPH_PARAMS:
        return
    try:
        sample = trainer.train_loader.dataset[0]
        was_training = model.training
        model.eval()  # batch norm over one sample
        try:
            with warnings.catch_warnings():  # torch.jit.trace's deprecation notices
                warnings.simplefilter("ignore")
                writer.graph(model, sample[0].unsqueeze(0).to(trainer.device))
        finally:
            model.train(was_training)
    except Exception as exc:  # noqa: BLE001 - the graph is a nicety
        log.debug("No TensorBoard graph: %s", exc)


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


# -- export of a finished run --------------------------------------------------------------------


def export_run(ws: Workspace, run_id: str, tracker: str, target: str) -> dict[str, Any]:
    """Send a finished run (params, every stored metric, checkpoint and ONNX files) to a tracker
    as a new tracker run tagged with the run id."""
    from core.runs.records import ACTIVE

    if tracker not in TRACKERS:
        raise InvalidConfig(f"Unknown tracker {tracker!r}: {', '.join(TRACKERS)}.")
    run = ws.store.get_run(run_id)
    if run.status in ACTIVE:
        raise UserError(f"Run {run_id} is {run.status}; export it when it has finished (or "
                        "train it with --mlflow URI to log it live).")
    config = RunConfig.from_dict(run.config)
    rows = [(step, key, value) for key, points in ws.store.get_metrics(run_id).items()
            for step, value in points]
    files = run_files(ws.run_dir(run_id))
    try:
        writer = WRITERS[tracker](target, run_id, ws.home)
        writer.start(params_of(config), {**tags_of(run), "lab2market.source": "export"},
                     resume=False, name=run.name)
        writer.log(rows)
        writer.artifacts(files)
        writer.finish(run.status, run.summary.get("final"))
    except Exception as exc:  # noqa: BLE001 - the tracker's own error, as one line
        raise UserError(f"Could not export {run_id} to {tracker} at {target}: "
                        f"{_one_line(exc)}") from None
    return {"run_id": run_id, "tracker": tracker, "target": target, "metrics": len(rows),
            "artifacts": [str(p) for p, _ in files],
            "tracker_run": getattr(writer, "mlflow_run", None) or str(writer.folder)}
