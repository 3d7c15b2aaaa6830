"""``python -m core runs | status RUN | cancel RUN | resume RUN | delete RUN`` (and ``_job``,
the body of a background training job), plus the run helpers ``train`` shares."""

from __future__ import annotations

import argparse
from typing import Any

from core import runs
from core.cli.base import Result, add_command, command, follow_run
from core.errors import InvalidConfig, InvalidName
from core.runs import reconcile
from core.runs.records import Job, Run
from core.runs.store import Store
from core.workspace import is_valid_name


def add_parsers(sub) -> None:
    listing = add_command(sub, "runs", "list runs (`runs export RUN --to mlflow URI`: send one "
                                       "to a tracker)")
    listing.add_argument("--limit", type=int, default=50)
    export = add_command(listing.add_subparsers(dest="runs_command", metavar="COMMAND"),
                         "export", "send a finished run to MLflow or TensorBoard", group="runs")
    export.add_argument("run")
    export.add_argument("--to", nargs=2, required=True, metavar=("TRACKER", "TARGET"),
                        help="mlflow URI (http://HOST:PORT, file:///DIR) or tensorboard DIR")
    add_command(sub, "status", "show a run: status, lineage, progress, its jobs").add_argument(
        "run")
    add_command(sub, "cancel", "stop a run's training, or any job (RUN or JOB id)").add_argument(
        "id", metavar="RUN|JOB")
    add_command(sub, "delete", "delete a finished run and its files").add_argument("run")
    res = add_command(sub, "resume", "continue an interrupted or cancelled run")
    res.add_argument("run")
    res.add_argument("--detach", action="store_true", help="resume in the background")
    res.add_argument("--trials", type=int, help="a study: run this many more trials")
    jobs = add_command(sub, "jobs", "background work: what runs, what waits, what ended")
    jobs.add_argument("--all", action="store_true", help="also the jobs that ended")
    jobs.add_argument("--limit", type=int, default=50)
    queue = add_command(sub, "queue", "show or set how many heavy jobs run at once")
    queue.add_argument("--max-jobs", type=int, help="the workspace's cap (also: "
                                                    "$LAB2MARKET_MAX_JOBS)")
    job = add_command(sub, "_job", None)  # internal: the body of a training job
    job.add_argument("run")
    job.add_argument("--resume", action="store_true")


@command("runs")
def runs_list(args: argparse.Namespace) -> Result:
    store = args.ws.store
    reconcile(store)
    items = store.list_runs(limit=args.limit)
    lines = [f"{r.id}  {r.status:11} {r.kind:9} {r.dataset:14} {r.model:18} epoch {r.epoch}/"
             f"{r.total_epochs}  best {_fmt(r.best_metric)}" for r in items]
    return Result({"runs": [run_payload(r) for r in items]}, "\n".join(lines) or "no runs yet")


@command("runs export")
def runs_export(args: argparse.Namespace) -> Result:
    from core.train.sinks import export_run

    tracker, target = args.to
    found = export_run(args.ws, args.run, tracker, target)
    return Result(found, f"exported {args.run} to {tracker} ({found['tracker_run']}): "
                         f"{found['metrics']} metric points, {len(found['artifacts'])} file(s)")


@command("status")
def status(args: argparse.Namespace) -> Result:
    store = args.ws.store
    reconcile(store)
    run = store.get_run(args.run)
    if run.kind == "cv":  # a cross-validation parent: its folds and their mean +- std
        from core.cli.crossval import cv_result
        return cv_result(args.ws, run.id)
    if run.kind == "study":  # a tuning study: its trials and its best
        from core.cli.tune import study_result
        return study_result(args.ws, run.id)
    payload = run_payload(run)
    payload["latest"] = {k: v[-1][1] for k, v in store.get_metrics(run.id).items() if v}
    jobs = store.list_jobs(run_id=run.id)
    payload["jobs"] = [job_payload(j) for j in jobs]
    lineage = run.kind + (f" of {run.parent_run}" if run.parent_run else "")
    text = (f"{run.id}: {run.status} ({lineage}), epoch {run.epoch}/{run.total_epochs}, "
            f"step {run.step}/{run.total_steps}" + (f"\nerror: {run.error}" if run.error else ""))
    text += "".join(f"\n  job {j.id} {j.kind:9} {j.status}" for j in jobs if j.is_active)
    return Result(payload, text)


@command("cancel")
def cancel(args: argparse.Namespace) -> Result:
    store = args.ws.store
    if is_valid_name("job", args.id):
        job = runs.cancel_job(store, args.id)
        return Result(job_payload(job), f"{job.id}: {job.status}")
    if not is_valid_name("run", args.id):
        raise InvalidName(f"{args.id!r} is neither a run id (20260101-120000-a1b2c3) nor a job "
                          "id (j20260101-120000-a1b2c3); `python -m core runs` and `jobs` list "
                          "them.")
    run = runs.cancel(store, args.id)
    return Result(run_payload(run), f"{run.id}: {run.status}")


@command("delete")
def delete(args: argparse.Namespace) -> Result:
    store = args.ws.store
    runs.delete(store, args.run)
    return Result({"deleted": args.run}, f"deleted {args.run}")


@command("resume")
def resume(args: argparse.Namespace) -> Result:
    store = args.ws.store
    if store.get_run(args.run).kind == "study":  # a new driver; --trials raises its budget
        from core.cli.tune import follow_study, study_result
        from core.tune import resume_study
        resume_study(store, args.run, trials=args.trials)
        if not args.detach:
            follow_study(args.ws, args.run)
        return study_result(args.ws, args.run)
    if args.trials is not None:
        raise InvalidConfig(f"--trials adds trials to a study; {args.run} is not one.")
    run = runs.resume(store, args.run)
    if run.kind == "cv":  # resumed its interrupted or cancelled folds
        from core.cli.crossval import cv_result, follow_cv
        if not args.detach:
            follow_cv(args.ws, run.id)
        return cv_result(args.ws, run.id)
    if args.detach:
        return Result(run_payload(run), f"Resumed {run.id} in the background")
    return report(follow(store, run.id))


@command("jobs")
def jobs_list(args: argparse.Namespace) -> Result:
    store = args.ws.store
    reconcile(store)
    statuses = None if args.all else ("queued", "running")
    found = store.list_jobs(statuses, limit=args.limit)
    lines = [f"{j.id}  {j.status:11} {j.kind:9} {j.run_id}  {j.message}" for j in found]
    return Result({"jobs": [job_payload(j) for j in found]},
                  "\n".join(lines) or "no jobs" + ("" if args.all else " queued or running"))


@command("queue")
def queue(args: argparse.Namespace) -> Result:
    store = args.ws.store
    if args.max_jobs is not None:
        runs.set_max_jobs(store, args.max_jobs)
    reconcile(store)
    limit, source = runs.max_jobs(store)
    active = store.active_jobs()
    running = [j for j in active if j.heavy and j.status == "running"]
    waiting = [j for j in active if j.heavy and j.status == "queued"]
    payload = {"max_jobs": limit, "source": source, "running": [job_payload(j) for j in running],
               "queued": [job_payload(j) for j in waiting]}
    text = (f"{len(running)}/{limit} heavy job(s) running ({source}); {len(waiting)} queued"
            + "".join(f"\n  {i}. {j.id} {j.kind} {j.run_id}" for i, j in enumerate(waiting, 1)))
    return Result(payload, text)


@command("_job")
def job(args: argparse.Namespace) -> int:
    from core.train import execute_run

    callbacks = []
    if args.ws.store.get_run(args.run).kind == "trial":  # reports each epoch to its study
        from core.tune.callback import trial_callbacks
        callbacks = trial_callbacks(args.ws, args.run)
    summary = execute_run(args.ws, args.run, resume=args.resume, callbacks=callbacks)
    args.job_status = summary.get("status")  # the job ends as its run did
    args.result = {"run_id": args.run, "status": args.job_status}
    return 0 if args.job_status in ("completed", "cancelled", "pruned") else 1


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


def job_payload(job: Job) -> dict[str, Any]:
    """A job as ``--json`` prints it."""
    return {"job_id": job.id, "run_id": job.run_id, "kind": job.kind, "key": job.key,
            "status": job.status, "heavy": job.heavy, "done": job.done, "total": job.total,
            "message": job.message, "error": job.error, "created_at": job.created_at,
            "started_at": job.started_at, "ended_at": job.ended_at}


def follow(store: Store, run_id: str) -> Run:
    """Wait for a run's queued training to end, with a progress bar; Ctrl-C cancels it.

    Blocking ``train`` and ``resume`` go through the same queue as everything else, so a
    terminal cannot start a training the workspace's cap does not allow.
    """
    return follow_run(store, run_id, "step", lambda run: (
        "(queued)" if run.status == "queued" else f"epoch {run.epoch}/{run.total_epochs}",
        run.total_steps or None, run.step), lambda: runs.cancel(store, run_id))


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
