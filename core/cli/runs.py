"""The CLI's commands, one small function each (registered with ``@command``)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from typing import Any

from core.cli.main import command, config_from_args, emit
from core.runs.store import TERMINAL, Run, Store


@command("datasets list")
def datasets_list(args: argparse.Namespace) -> int:
    from core.data import list_datasets

    infos = list_datasets(args.home)
    lines = [f"{i.name:16} {i.modality:8} {len(i.classes):3} classes  "
             f"{sum(i.split_counts.values()):6} samples  {'built-in' if i.builtin else 'imported'}"
             for i in infos]
    emit(args, {"datasets": [i.to_dict() for i in infos]}, "\n".join(lines))
    return 0


@command("datasets import")
def datasets_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.data import import_dataset

    with tqdm(desc=f"import {args.name}", unit="file", file=sys.stderr, leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        info = import_dataset(args.name, args.source, args.home, target=args.target,
                              progress=progress)
    emit(args, info.to_dict(), f"Imported {info.name}: {info.modality}, {len(info.classes)} "
                               f"classes, splits {info.split_counts}")
    return 0


@command("models")
def models_list(args: argparse.Namespace) -> int:
    from core.models import list_models

    specs = list_models()
    emit(args, {"models": [asdict(s) for s in specs]},
         "\n".join(f"{s.name:20} {','.join(s.modalities):14} {s.description}" for s in specs))
    return 0


@command("train")
def train(args: argparse.Namespace) -> int:
    from core.runs import jobs

    config = config_from_args(args)
    store = Store(args.home)
    if args.create_only:
        run = jobs.create_run(store, config, name=args.name)
        emit(args, run_payload(run), run.id)
        return 0
    if args.detach:
        run = jobs.launch(store, config, name=args.name)
        emit(args, run_payload(run), f"Launched {run.id} in the background "
                                     f"(`python -m core status {run.id}`)")
        return 0
    run = jobs.create_run(store, config, name=args.name)
    print(f"run {run.id}", file=sys.stderr)
    if config.train.nproc > 1:
        jobs.spawn(store, run.id)
        run = _follow(store, run.id)
    else:
        run = _train_in_process(store, run.id, resume=False)
    return _report(args, run)


@command("resume")
def resume(args: argparse.Namespace) -> int:
    from core.runs import jobs
    from core.workspace import run_dir

    store = Store(args.home)
    distributed = store.get_run(args.run).config["train"]["nproc"] > 1
    run = jobs.resume(store, args.run, detach=args.detach or distributed)
    if args.detach:
        emit(args, run_payload(run), f"Resumed {run.id} in the background")
        return 0
    if distributed:
        return _report(args, _follow(store, run.id))
    has_checkpoint = (run_dir(store.home, run.id) / "checkpoints" / "last.pt").is_file()
    return _report(args, _train_in_process(store, run.id, resume=has_checkpoint))


@command("_job")
def job(args: argparse.Namespace) -> int:
    from core.train import execute_run

    summary = execute_run(args.run, args.home, resume=args.resume)
    return 0 if summary.get("status") in ("completed", "cancelled") else 1


@command("runs")
def runs(args: argparse.Namespace) -> int:
    from core.runs import jobs

    store = Store(args.home)
    jobs.reconcile(store)
    items = store.list_runs(limit=args.limit)
    lines = [f"{r.id}  {r.status:11} {r.dataset:14} {r.model:18} epoch {r.epoch}/"
             f"{r.total_epochs}  best {_fmt(r.best_metric)}" for r in items]
    emit(args, {"runs": [run_payload(r) for r in items]}, "\n".join(lines) or "no runs yet")
    return 0


@command("status")
def status(args: argparse.Namespace) -> int:
    from core.runs import jobs

    store = Store(args.home)
    jobs.reconcile(store)
    run = store.get_run(args.run)
    payload = run_payload(run)
    latest = {k: v[-1][1] for k, v in store.get_metrics(run.id).items() if v}
    payload["latest"] = latest
    text = (f"{run.id}: {run.status}, epoch {run.epoch}/{run.total_epochs}, "
            f"step {run.step}/{run.total_steps}" + (f"\nerror: {run.error}" if run.error else ""))
    emit(args, payload, text)
    return 0


@command("cancel")
def cancel(args: argparse.Namespace) -> int:
    from core.runs import jobs

    run = jobs.cancel(Store(args.home), args.run)
    emit(args, run_payload(run), f"{run.id}: {run.status}")
    return 0


@command("delete")
def delete(args: argparse.Namespace) -> int:
    from core.runs import jobs

    jobs.delete(Store(args.home), args.run)
    emit(args, {"deleted": args.run}, f"deleted {args.run}")
    return 0


# -- helpers -------------------------------------------------------------------------------------


def run_payload(run: Run) -> dict[str, Any]:
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


def _train_in_process(store: Store, run_id: str, resume: bool) -> Run:
    from core.cli.progress import TqdmProgress
    from core.train import execute_run

    execute_run(run_id, store.home, resume=resume, callbacks=[TqdmProgress()])
    return store.get_run(run_id)


def _follow(store: Store, run_id: str) -> Run:
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


def _report(args: argparse.Namespace, run: Run) -> int:
    payload = run_payload(run)
    final = payload["final"]
    text = f"{run.id}: {run.status} after {run.epoch} epoch(s)"
    if final:
        text += "  " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(final.items()))
    if run.error:
        text += f"\nerror: {run.error}"
    emit(args, payload, text)
    if run.status in ("completed", "cancelled"):
        return 0
    return 2 if run.summary.get("user_error") else 1  # exit 2: the input was at fault


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
