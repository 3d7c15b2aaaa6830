"""Cross-validation in the CLI: ``train ... --cv K`` launches and follows the folds, ``status``
shows a CV parent's folds and mean +- std (helpers for ``core.cli.train`` and
``core.cli.runs``), and ``cv-final PARENT [--epochs N] [--detach]`` trains the final model on
all of train+val for the folds' mean best epoch."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.cli.base import Result, add_command, command, follow_run
from core.config import RunConfig
from core.runs.records import TERMINAL
from core.workspace import Workspace


def add_parsers(sub) -> None:
    p = add_command(sub, "cv-final", "train the final model of a cross-validation on all of "
                                     "train+val (the test split stays held out)")
    p.add_argument("parent", metavar="PARENT", help="the cross-validation's parent run")
    p.add_argument("--epochs", type=int, help="epochs to train (default: the folds' mean best "
                                              "epoch)")
    p.add_argument("--detach", action="store_true", help="run in the background")


@command("cv-final")
def cv_final(args: argparse.Namespace) -> Result:
    from core.cli.runs import follow, report, run_payload
    from core.data.folds import TRAIN_ON_VAL_NOTE
    from core.errors import InvalidConfig
    from core.runs.cv import launch_final

    if args.epochs is not None and args.epochs < 1:
        raise InvalidConfig(f"--epochs must be at least 1, got {args.epochs}.")
    run = launch_final(args.ws.store, args.parent, args.epochs)
    what = f"final model {run.id} of {args.parent} ({run.total_epochs} epoch(s))"
    if args.detach:
        return Result(run_payload(run), f"Launched the {what} in the background "
                                        f"(`python -m core status {run.id}`). {TRAIN_ON_VAL_NOTE}")
    print(f"{what}. {TRAIN_ON_VAL_NOTE}", file=sys.stderr)
    return report(follow(args.ws.store, run.id))


def train_cv(ws: Workspace, config: RunConfig, name: str, detach: bool) -> Result:
    """Queue the folds; without ``detach`` follow them to the end and print the summary."""
    from core.runs.cv import launch_cv

    parent, folds = launch_cv(ws.store, config, name=name)
    if detach:  # the same payload as `status PARENT`, before any fold has ended
        result = cv_result(ws, parent.id)
        result.text = (f"Launched {len(folds)}-fold cross-validation {parent.id} in the "
                       f"background (`python -m core status {parent.id}`)\n{result.text}")
        return result
    print(f"cv {parent.id}: folds " + " ".join(f.id for f in folds), file=sys.stderr)
    follow_cv(ws, parent.id)
    return cv_result(ws, parent.id)


def follow_cv(ws: Workspace, parent_id: str) -> None:
    """Wait until every fold has ended, with one progress bar over all of them; Ctrl-C
    cancels the cross-validation (its active folds)."""
    from core.runs import cancel
    from core.runs.cv import fold_runs

    store = ws.store

    def describe(parent: Any) -> tuple[str, int | None, int]:
        folds = fold_runs(store, parent_id)
        ended = sum(f.status in TERMINAL for f in folds)
        return f"{ended}/{len(folds)} folds ended", parent.total_steps or None, parent.step
    follow_run(store, parent_id, "step", describe, lambda: cancel(store, parent_id))


def cv_result(ws: Workspace, parent_id: str) -> Result:
    """A CV parent as ``status`` and a blocking ``train --cv`` print it; exit 0 when it
    completed or was cancelled, else 1."""
    from core.analyze.cv import cv_summary

    summary = cv_summary(ws, parent_id)
    code = 0 if summary["status"] in ("completed", "cancelled", "queued", "running") else 1
    return Result(summary, render(summary), code)


def render(summary: dict[str, Any]) -> str:
    lines = [f"{summary['run_id']}: {summary['status']} ({summary['k']}-fold cross-validation "
             f"of {summary['model']} on {summary['dataset']})"]
    for fold in summary["folds"]:
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in sorted(fold["final"].items()))
        lines.append(f"  fold {fold['fold']}  {fold['run_id']}  {fold['status']:11} {metrics}"
                     + (f"  error: {fold['error']}" if fold["error"] else ""))
    if summary["metrics"]:
        n = next(iter(summary["metrics"].values()))["n"]
        lines.append(f"mean +- std over {n} completed fold(s):")
        lines += [f"  {key:14} {s['mean']:.4f} +- {s['std']:.4f}"
                  for key, s in summary["metrics"].items()]
    elif not summary["ended"]:
        lines.append("mean +- std: when every fold has ended")
    if summary["best_epoch"]:
        best = summary["best_epoch"]
        lines.append(f"best epoch: {best['mean']:.1f} +- {best['std']:.1f} (`python -m core "
                     f"cv-final {summary['run_id']}` trains the final model on train+val for "
                     f"{summary['final_epochs']})")
    for final in summary.get("final_runs", []):
        lines.append(f"final model {final['run_id']}: {final['status']} ({final['epochs']} "
                     "epoch(s) on train+val)")
    for model, metrics in summary["baseline"].items():
        if model == "error":
            lines.append(f"baseline: {metrics}")
            continue
        lines.append(f"baseline {model}: " + "  ".join(
            f"{k} {s['mean']:.4f} +- {s['std']:.4f}" for k, s in metrics.items()))
    return "\n".join(lines)
