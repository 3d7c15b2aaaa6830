"""``python -m core prune RUN ...``, ``distill --teacher RUN --model M ...`` and
``variants RUN``: make a model smaller or faster, and compare what came out.

``prune`` and ``distill`` create a new run (kind ``pruned`` / ``distilled``, parent = the source
or the teacher) and queue its job like ``train`` does: they follow it to the end, or return at
once with ``--detach``; either way the new run id is printed. ``variants`` prints the table of a
run and its compressed descendants, measuring what is missing first.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.cli.base import Result, add_command, command, progress
from core.cli.flags import MODEL_DEST, add_config_flags, config_from_args
from core.cli.runs import follow, report, run_payload
from core.config import IMPORTANCES, PRUNE_SCOPES, PRUNE_TARGETS, PruneConfig
from core.runs.records import Run


def add_parsers(sub) -> None:
    p = add_command(sub, "prune", "prune a run into a new, smaller run, then fine-tune it")
    p.add_argument("run", help="the source run (its best checkpoint is pruned)")
    p.add_argument("--amount", type=float, default=0.5,
                   help="fraction to remove: of each layer's channels (structured, --target "
                        "channels), of the parameters or MACs (--target), or of the weights "
                        "(unstructured) (default: 0.5)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--structured", dest="method", action="store_const", const="structured",
                      help="remove whole channels: really smaller and faster (default)")
    kind.add_argument("--unstructured", dest="method", action="store_const",
                      const="unstructured", help="zero single weights: a smaller compressed "
                                                 "file, no faster on dense hardware")
    p.add_argument("--importance", choices=IMPORTANCES, default="l1",
                   help="how channels are ranked: L1/L2 magnitude, BN scale, Taylor (default: l1)")
    p.add_argument("--target", choices=PRUNE_TARGETS, default="channels",
                   help="what --amount is a fraction of (structured; default: channels)")
    p.add_argument("--scope", choices=PRUNE_SCOPES, default="global",
                   help="unstructured: one magnitude threshold for all layers, or per layer")
    p.add_argument("--steps", type=int, default=1, help="prune + fine-tune rounds (default: 1)")
    p.add_argument("--finetune-epochs", type=int, default=3, help="epochs after each round")
    p.add_argument("--lr", type=float, help="fine-tune learning rate (default: the source's)")
    _common(p)
    d = add_command(sub, "distill", "train a student model on a teacher run's soft predictions")
    d.add_argument("--teacher", required=True, help="the teacher run (any trained run or "
                                                    "ensemble)")
    d.add_argument("--temperature", type=float, default=4.0, help="softening T (default: 4)")
    d.add_argument("--alpha", type=float, default=0.7,
                   help="weight of the teacher's term; 1 - alpha weighs the labels (default 0.7)")
    d.set_defaults(config=None)
    add_config_flags(d)
    _common(d)
    v = add_command(sub, "variants", "a run and its pruned / distilled variants side by side")
    v.add_argument("run")
    v.add_argument("--budget", type=float, default=2.0,
                   help="seconds of latency measurement per ONNX model (default: 2)")
    v.add_argument("--force", action="store_true", help="measure again even if nothing changed")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="", help="a label for the new run")
    p.add_argument("--detach", action="store_true", help="run in the background")


@command("prune")
def prune(args: argparse.Namespace) -> Result:
    from core.compress import launch_prune

    settings = PruneConfig(method=args.method or "structured", amount=args.amount,
                           target=args.target, importance=args.importance, steps=args.steps,
                           scope=args.scope)
    run = launch_prune(args.ws.store, args.run, settings, args.finetune_epochs, args.lr,
                       args.name)
    return _launched(args, run)


@command("distill")
def distill(args: argparse.Namespace) -> Result:
    from core.compress import launch_distill, teacher_data
    from core.errors import InvalidConfig

    if getattr(args, MODEL_DEST) is None:
        raise InvalidConfig("Name the student: --model M (`python -m core models` lists them).")
    data = teacher_data(args.ws.store, args.teacher)
    for key in ("dataset", "fold", "cv"):  # the teacher's data, unless the flags say otherwise
        if getattr(args, f"config.data.{key}", None) is None:
            setattr(args, f"config.data.{key}", data.get(key))
    student = config_from_args(args)
    run = launch_distill(args.ws.store, args.teacher, student, args.temperature, args.alpha,
                         args.name)
    return _launched(args, run)


def _launched(args: argparse.Namespace, run: Run) -> Result:
    if args.detach:
        return Result(run_payload(run), run.id)
    print(f"run {run.id} ({run.kind} of {run.parent_run})", file=sys.stderr)
    done = report(follow(args.ws.store, run.id))
    done.payload["compress"] = args.ws.store.get_run(run.id).summary.get("compress")
    done.text = f"{run.id}\n{done.text}"
    return done


@command("variants")
def variants_command(args: argparse.Namespace) -> Result:
    from core.compress.variants import variants

    with progress(args, "variants") as bar:
        table = variants(args.ws, args.run, budget_s=args.budget, progress=bar, force=args.force)
    return Result(table, render(table["rows"]))


COLUMNS = (("run_id", "run", "{}"), ("method", "method", "{}"), ("params", "params", "{:,}"),
           ("macs", "MACs", "{:,}"), ("onnx_fp32_bytes", "onnx", "{:,}"),
           ("onnx_int8_bytes", "int8", "{:,}"), ("latency_b1_ms", "b1 ms", "{:.2f}"),
           ("latency_b32_ms", "b32 ms", "{:.1f}"), ("accuracy", "acc", "{:.4f}"),
           ("f1_macro", "F1", "{:.4f}"), ("accuracy_delta_points", "d acc", "{:+.2f}"),
           ("speedup_b1", "speedup", "{:.2f}x"))


def render(rows: list[dict[str, Any]]) -> str:
    header = [title for _, title, _ in COLUMNS] + ["pareto"]
    lines = [header]
    for row in rows:
        cells = ["-" if row.get(k) is None else fmt.format(row[k]) for k, _, fmt in COLUMNS]
        lines.append(cells + ["*" if row.get("pareto_latency_b1_ms") else ""])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
                     for line in lines)
