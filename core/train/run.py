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
from typing import Any

from core.config import RunConfig
from core.errors import UserError
from core.runs.store import Store
from core.train import distributed as dist
from core.train.callbacks import Callback, EarlyStopping, StoreLogger
from core.workspace import resolve_home, run_dir

log = logging.getLogger(__name__)


def execute_run(run_id: str, home: str | Path | None = None, resume: bool = False,
                callbacks: list[Callback] | tuple[Callback, ...] = (),
                record_pid: bool = True) -> dict[str, Any]:
    """Train ``run_id`` to a terminal status and return its summary (main rank's view)."""
    from core.train.trainer import Trainer  # torch is imported only when a run executes

    home = resolve_home(home)
    store = Store(home)
    run = store.get_run(run_id)
    config = RunConfig.from_dict(run.config)
    info = dist.detect()
    folder = run_dir(home, run_id)
    handler = _attach_log(folder / "log.txt") if info.is_main else None
    if info.is_main:
        fields: dict[str, Any] = {}
        if record_pid and not info.enabled:  # under torchrun the launcher's pid is kept
            from core.runs.processes import process_start_time
            fields = {"pid": os.getpid(), "pid_start": process_start_time(os.getpid())}
        store.update_run(run_id, **fields)
        # Only a queued run starts: one cancelled before its process got here stays cancelled.
        if not store.set_status(run_id, "running", expect=("queued", "interrupted")):
            status = store.get_run(run_id).status
            log.warning("Run %s is %s; not starting it", run_id, status)
            _detach_log(handler)
            store.close()
            return {"status": status, "error": f"run was {status} before it started"}
        store.add_event(run_id, "resumed" if resume else "started",
                        f"{'Resumed' if resume else 'Started'} on pid {os.getpid()}")
    t = config.train
    cbs: list[Callback] = [EarlyStopping(t.monitor, t.mode, t.patience)]
    if info.is_main:
        cbs.append(StoreLogger(store, run_id))
    trainer = Trainer(config, folder, home, callbacks=[*cbs, *callbacks])
    previous = _on_signals(trainer.request_stop)
    try:
        summary = trainer.fit(resume=resume)
    except UserError as exc:
        summary = _fail(store, run_id, str(exc), info.is_main, traceback.format_exc(),
                        user_error=True)
    except Exception as exc:  # noqa: BLE001 - a job records every failure before it exits
        message = f"{type(exc).__name__}: {exc}"
        summary = _fail(store, run_id, message, info.is_main, traceback.format_exc())
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
        store.close()
    return summary


def _fail(store: Store, run_id: str, message: str, is_main: bool, tb: str,
          user_error: bool = False) -> dict[str, Any]:
    log.error("Run %s failed: %s", run_id, message)
    if is_main:
        # The traceback goes to the run's log only: the terminal and the page get the message.
        with open(run_dir(store.home, run_id) / "log.txt", "a") as fh:
            fh.write(tb)
        store.update_run(run_id, summary={"user_error": user_error})
        store.set_status(run_id, "failed", error=message, expect=("running", "queued"))
        store.add_event(run_id, "failed", message, level="error")
    return {"status": "failed", "error": message, "user_error": user_error}


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
        handler.close()


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
