"""Execute one stored run: the body of a job process (or of a blocking ``train``).

Owns everything around the loop: status transitions, the run's log file, turning SIGTERM into a
clean cancel, and recording a failure's message (and its traceback in ``log.txt``).
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.checkpoint import remove_temp_files
from core.config import RunConfig
from core.errors import UserError, WorkspaceUnavailable, workspace_error
from core.runs.store import Store
from core.train import distributed as dist
from core.train.batch_finder import OutOfMemory, is_out_of_memory, out_of_memory_message
from core.train.callbacks import Callback, EarlyStopping, StoreLogger
from core.workspace import Workspace, run_dir

if TYPE_CHECKING:
    from core.train.trainer import Trainer

log = logging.getLogger(__name__)


def execute_run(ws: Workspace, run_id: str, resume: bool = False,
                callbacks: list[Callback] | tuple[Callback, ...] = (),
                record_pid: bool = True) -> dict[str, Any]:
    """Train ``run_id`` to a terminal status and return its summary (main rank's view).

    How it ends: ``completed`` or ``cancelled`` from the loop; ``interrupted`` (resumable) when
    the workspace disk is full or read-only, or when a resume cannot start (e.g. a damaged
    checkpoint); ``failed`` for anything else, with its one-line message. It writes through
    ``ws.store``; whoever opened ``ws`` closes it.
    """
    store = ws.store
    run = store.get_run(run_id)
    if run.kind == "lr_find":  # a resumed LR range test runs again: it keeps no checkpoint
        from core.train.lr_finder import run_lr_find
        return run_lr_find(ws, run_id)
    config = RunConfig.from_dict(run.config)
    info = dist.detect()
    folder = ws.run_dir(run_id)
    handler = _attach_log(folder / "log.txt") if info.is_main else None
    if info.is_main and not _start(store, run_id, resume, record_pid and not info.enabled):
        status = store.get_run(run_id).status
        log.warning("Run %s is %s; not starting it", run_id, status)
        _detach_log(handler)
        return {"status": status, "error": f"run was {status} before it started"}
    trainer = None
    previous: dict[int, Any] = {}
    try:
        trainer = _build_trainer(ws, config, folder, run_id, info.is_main, callbacks)
        previous = _on_signals(trainer.request_stop)
        summary = trainer.fit(resume=resume)
    except Exception as exc:  # noqa: BLE001 - a job records every failure before it exits
        started = trainer is not None and trainer.started
        if is_out_of_memory(exc):  # one line that names the way out, not a CUDA traceback
            device = str(trainer.device) if trainer is not None else None
            exc = OutOfMemory(out_of_memory_message(config, device))
        summary = _record_failure(store, run_id, exc, info.is_main, resume and not started)
        if trainer is not None:  # its MLflow / TensorBoard runs end too, not left RUNNING
            from core.train.sinks import end_sinks
            end_sinks(trainer.callbacks, summary["status"])
    else:
        if info.is_main:
            store.update_run(run_id, summary=summary, best_metric=summary["best"])
            store.set_status(run_id, summary["status"], expect=("running",))
            store.add_event(run_id, summary["status"], _describe(summary))
            log.info("Run %s %s", run_id, _describe(summary))
    finally:
        _restore_signals(previous)
        dist.shutdown()
        _detach_log(handler)
    return summary


def _start(store: Store, run_id: str, resume: bool, record_pid: bool) -> bool:
    """Claim the run (queued -> running) and clear what a killed writer left behind."""
    fields: dict[str, Any] = {}
    if record_pid:  # under torchrun the launcher's pid is kept
        from core.runs.processes import process_start_time
        fields = {"pid": os.getpid(), "pid_start": process_start_time(os.getpid())}
    store.update_run(run_id, **fields)
    # Only a queued run starts: one cancelled before its process got here stays cancelled.
    if not store.set_status(run_id, "running", expect=("queued", "interrupted")):
        return False
    # This job now owns the run's folder: temp files there are a killed writer's leftovers.
    remove_temp_files(run_dir(store.home, run_id) / "checkpoints")
    store.add_event(run_id, "resumed" if resume else "started",
                    f"{'Resumed' if resume else 'Started'} on pid {os.getpid()}")
    return True


def _build_trainer(ws: Workspace, config: RunConfig, folder: Path, run_id: str,
                   is_main: bool, callbacks: list[Callback] | tuple[Callback, ...]) -> Trainer:
    # torch is imported only when a run executes. A pruned run prunes its source's weights
    # first; a distilled one also learns from its teacher's predictions.
    if config.prune is not None:
        from core.compress.finetune import PruneTrainer as Trainer
    elif config.distill is not None:
        from core.train.distill import DistillTrainer as Trainer
    else:
        from core.train.trainer import Trainer

    t = config.train
    cbs: list[Callback] = [EarlyStopping(t.monitor, t.mode, t.patience)]
    if is_main:
        from core.train.monitor import ResourceMonitor, StarvationHint
        from core.train.sinks import build_sinks

        cbs += [StoreLogger(ws.store, run_id), StarvationHint(ws.store, run_id),
                *build_sinks(ws, run_id, config)]
        if t.resource_every > 0:
            cbs.append(ResourceMonitor(ws.store, run_id, every_s=t.resource_every))
    return Trainer(ws, config, folder, callbacks=[*cbs, *callbacks])


def _record_failure(store: Store, run_id: str, exc: Exception, is_main: bool,
                    resume_not_started: bool) -> dict[str, Any]:
    """Interrupted (resumable) for a full or read-only disk and for a resume that could not
    start; failed otherwise. The traceback goes to the run's log only."""
    tb = traceback.format_exc()
    problem = exc if isinstance(exc, WorkspaceUnavailable) else workspace_error(exc, store.home)
    if problem is not None:
        return _interrupt(store, run_id, _resumable(str(problem), run_id), is_main, tb)
    if isinstance(exc, UserError) and resume_not_started:
        # The run's status stays what it was before the resume (it was resumable, it still is):
        # the user can fix or delete the file and resume again.
        return _interrupt(store, run_id, str(exc), is_main, tb)
    if isinstance(exc, UserError):
        return _fail(store, run_id, str(exc), is_main, tb, user_error=True)
    return _fail(store, run_id, f"{type(exc).__name__}: {exc}", is_main, tb)


def _resumable(message: str, run_id: str) -> str:
    """The workspace message with "resume" as the way on: the run keeps its checkpoint."""
    head = message.split("; ", 1)[0]
    fix = "make it writable" if "read-only" in head else "free some space"
    return f"{head}; {fix} and resume the run (`python -m core resume {run_id}`)"


def _interrupt(store: Store, run_id: str, message: str, is_main: bool,
               tb: str) -> dict[str, Any]:
    log.warning("Run %s interrupted: %s", run_id, message)
    if is_main:
        _append_log(store.home, run_id, tb)
        try:
            store.set_status(run_id, "interrupted", error=message, expect=("queued", "running"))
            store.add_event(run_id, "interrupted", message, level="warning")
        except Exception as exc:  # noqa: BLE001 - reconcile marks it interrupted once we exit
            log.error("Could not record the interruption of %s: %s", run_id, exc)
    return {"status": "interrupted", "error": message, "user_error": True}


def _fail(store: Store, run_id: str, message: str, is_main: bool, tb: str,
          user_error: bool = False) -> dict[str, Any]:
    log.error("Run %s failed: %s", run_id, message)
    if is_main:
        # The traceback goes to the run's log only: the terminal and the page get the message.
        _append_log(store.home, run_id, tb)
        store.update_run(run_id, summary={"user_error": user_error})
        store.set_status(run_id, "failed", error=message, expect=("running", "queued"))
        store.add_event(run_id, "failed", message, level="error")
    return {"status": "failed", "error": message, "user_error": user_error}


def _append_log(home: Path, run_id: str, text: str) -> None:
    try:
        with open(run_dir(home, run_id) / "log.txt", "a") as fh:
            fh.write(text)
    except OSError as exc:  # a full disk must not hide the status behind a second traceback
        log.warning("Could not write the traceback to the run's log: %s", exc)


def _describe(summary: dict[str, Any]) -> str:
    text = f"{summary['status']} after {summary['epochs_run']} epoch(s)"
    if summary.get("stop_reason"):
        text += f": stopped early, {summary['stop_reason']}"
    return text


def _attach_log(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


def _detach_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        try:
            handler.close()
        except OSError:  # a full disk: the buffered lines are lost, the status is not
            pass


def _on_signals(stop) -> dict[int, Any]:
    """SIGTERM (cancel) and SIGINT (Ctrl-C) ask the loop to checkpoint and stop."""
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, lambda *_: stop())
        except ValueError:  # not the main thread (e.g. inside a test runner's worker thread)
            pass
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
