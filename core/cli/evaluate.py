"""``python -m core evaluate RUN [--split val|test]``: predict a split once, print its metrics."""

from __future__ import annotations

import argparse

from core.analyze import EVAL_BATCH_SIZE, EVAL_SPLITS
from core.cli.base import Result, add_command, command, progress


def add_parsers(sub) -> None:
    p = add_command(sub, "evaluate",
                    "metrics of a run on a split (the predictions are stored and reused)")
    p.add_argument("run")
    p.add_argument("--split", choices=EVAL_SPLITS, default="test")
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE)
    p.add_argument("--device", default="cpu", help="cpu | auto | cuda | cuda:N (default: cpu)")
    p.add_argument("--force", action="store_true",
                   help="predict again even if the stored predictions are up to date")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip temperature scaling (which also evaluates the val split)")


@command("evaluate")
def evaluate_command(args: argparse.Namespace) -> Result:
    from core.analyze.evaluate import evaluate, summarize

    splits = [args.split]
    if args.calibrate and args.split != "val":
        splits.insert(0, "val")  # temperature scaling is fitted on the validation split
    found = {}
    with progress(args, f"evaluate {args.run}") as bar:
        for split in splits:
            found[split] = evaluate(args.ws, args.run, split, batch_size=args.batch_size,
                                    progress=bar, force=args.force, device=args.device)
    preds = found[args.split]
    result = summarize(preds, found.get("val") if args.calibrate else None)
    return Result(result, render_text(result))


def render_text(result: dict) -> str:
    o = result["overall"]
    lines = [f"run {result['run_id']} · {result['dataset']}/{result['split']} · "
             f"{o['samples']} samples ({result['skipped']} skipped) · {result['checkpoint']}"]
    for key in ("accuracy", "balanced_accuracy", "top3_accuracy", "top5_accuracy", "log_loss",
                "f1_macro", "f1_weighted", "auc_macro", "auc_weighted",
                "average_precision_macro", "ece"):
        if key in o:
            lines.append(f"  {key:24} {_fmt(o[key])}")
    if result["auc"] and result["auc"].get("note"):
        lines.append(f"  AUC: {result['auc']['note']}")
    cal = result.get("calibration")
    if cal:
        lines.append(f"  temperature {cal['temperature']:.3f} (fitted on {cal['fitted_on']}): "
                     f"ECE {_fmt(cal['ece_before'])} -> {_fmt(cal['ece_after'])}")
    lines.append(f"  {'class':16} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8} "
                 f"{'auc':>8}")
    for row in result["per_class"]:
        lines.append(f"  {row['class'][:16]:16} {row['precision']:9.4f} {row['recall']:9.4f} "
                     f"{row['f1']:9.4f} {row['support']:8d} {_fmt(row['auc']):>8}"
                     + (f"  {row['note']}" if row["note"] else ""))
    return "\n".join(lines)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
