"""``python -m core runs | status RUN | cancel RUN | resume RUN | delete RUN`` (and ``_job``,
the body of a background training job), plus the run helpers ``train`` shares."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from core.cli.base import Result, add_command, command
from core.runs.store import TERMINAL, Run, Store


def add_parsers(sub) -> None:
    add_command(sub, "runs", "list runs").add_argument("--limit", type=int, default=50)
    for name, text in (("status", "show a run"), ("cancel", "stop a running run"),
                       ("delete", "delete a finished run and its files")):
        add_command(sub, name, text).add_argument("run")
    res = add_command(sub, "resume", "continue an interrupted or cancelled run")
    res.add_argument("run")
    res.add_argument("--detach", action="store_true", help="resume in the background")
    job = add_command(sub, "_job", None)  # internal: started by core.runs.jobs.job_command
    job.add_argument("run")
    job.add_argument("--resume", action="store_true")


@command("runs")
def runs(args: argparse.Namespace) -> Result:
    from core.runs import jobs

    store = Store(args.home)
    jobs.reconcile(store)
    items = store.list_runs(limit=args.limit)
    lines = [f"{r.id}  {r.status:11} {r.dataset:14} {r.model:18} epoch {r.epoch}/"
             f"{r.total_epochs}  best {_fmt(r.best_metric)}" for r in items]
    return Result({"runs": [run_payload(r) for r in items]}, "\n".join(lines) or "no runs yet")


@command("status")
def status(args: argparse.Namespace) -> Result:
    from core.runs import jobs

    store = Store(args.home)
    jobs.reconcile(store)
    run = store.get_run(args.run)
    payload = run_payload(run)
    payload["latest"] = {k: v[-1][1] for k, v in store.get_metrics(run.id).items() if v}
    text = (f"{run.id}: {run.status}, epoch {run.epoch}/{run.total_epochs}, "
            f"step {run.step}/{run.total_steps}" + (f"\nerror: {run.error}" if run.error else ""))
    return Result(payload, text)


@command("cancel")
def cancel(args: argparse.Namespace) -> Result:
    from core.runs import jobs

    run = jobs.cancel(Store(args.home), args.run)
    return Result(run_payload(run), f"{run.id}: {run.status}")


@command("delete")
def delete(args: argparse.Namespace) -> Result:
    from core.runs import jobs

    jobs.delete(Store(args.home), args.run)
    return Result({"deleted": args.run}, f"deleted {args.run}")


@command("resume")
def resume(args: argparse.Namespace) -> Result:
    from core.runs import jobs
    from core.workspace import run_dir

    store = Store(args.home)
    distributed = store.get_run(args.run).config["train"]["nproc"] > 1
    run = jobs.resume(store, args.run, detach=args.detach or distributed)
    if args.detach:
        return Result(run_payload(run), f"Resumed {run.id} in the background")
    if distributed:
        return report(follow(store, run.id))
    has_checkpoint = (run_dir(store.home, run.id) / "checkpoints" / "last.pt").is_file()
    return report(train_in_process(store, run.id, resume=has_checkpoint))


@command("_job")
def job(args: argparse.Namespace) -> int:
    from core.train import execute_run

    summary = execute_run(args.run, args.home, resume=args.resume)
    return 0 if summary.get("status") in ("completed", "cancelled") else 1


# -- helpers (train shares them) -----------------------------------------------------------------


def run_payload(run: Run) -> dict[str, Any]:
    """A run as ``--json`` prints it."""
    return {
        "run_id": run.id, "name": run.name, "status": run.status, "dataset": run.dataset,
        "model": run.model, "epochs_run": run.epoch, "epochs": run.total_epochs,
        "step": run.step, "total_steps": run.total_steps, "best_metric": run.best_metric,
        "monitor": run.config["train"]["monitor"], "created_at": run.created_at,
        "duration_s": run.duration, "device": run.device, "error": run.error,
        "best": run.summary.get("best_epoch", {}), "final": run.summary.get("final", {}),
        "stop_reason": run.summary.get("stop_reason"),
        "skipped_images": run.summary.get("skipped_images", 0),
    }


def train_in_process(store: Store, run_id: str, resume: bool) -> Run:
    """Train (or resume) a run in this process, with a progress bar on stderr."""
    from core.cli.progress import TqdmProgress
    from core.train import execute_run

    execute_run(run_id, store.home, resume=resume, callbacks=[TqdmProgress()])
    return store.get_run(run_id)


def follow(store: Store, run_id: str) -> Run:
    """Wait for a background run (e.g. torchrun) to end, with a progress bar; Ctrl-C cancels."""
    from tqdm import tqdm

    from core.runs import jobs

    with tqdm(desc=run_id, unit="step", file=sys.stderr) as bar:
        try:
            while True:
                jobs.reconcile(store)
                run = store.get_run(run_id)
                bar.total, bar.n = run.total_steps or None, run.step
                bar.refresh()
                if run.status in TERMINAL:
                    return run
                time.sleep(0.5)
        except KeyboardInterrupt:
            return jobs.cancel(store, run_id)


def report(run: Run) -> Result:
    """A finished run's result; exit 0 if it completed or was cancelled, 2 if its input was at
    fault, else 1."""
    payload = run_payload(run)
    final = payload["final"]
    text = f"{run.id}: {run.status} after {run.epoch} epoch(s)"
    if final:
        text += "  " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(final.items()))
    if run.error:
        text += f"\nerror: {run.error}"
    if run.status in ("completed", "cancelled"):
        code = 0
    else:
        code = 2 if run.summary.get("user_error") else 1
    return Result(payload, text, code)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
