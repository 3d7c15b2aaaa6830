"""``python -m core ensemble RUN RUN [RUN...] [--method M] [--name N]``: combine runs into one.

Creates the ensemble run (kind ``ensemble``), fits its combiner on the members' validation
predictions, evaluates it on val and test, and prints each member's test accuracy next to the
ensemble's with the members' pairwise disagreement (why the ensemble helps, or does not).
It runs in this process: once the members' predictions are stored it takes seconds.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.analyze import ENSEMBLE_METHODS
from core.cli.base import Result, add_command, command, progress


def add_parsers(sub) -> None:
    p = add_command(sub, "ensemble", "combine runs of one dataset into an ensemble run "
                                     "(fitted on val, evaluated on test)")
    p.add_argument("members", nargs="+", metavar="RUN", help="two or more member runs")
    p.add_argument("--method", choices=ENSEMBLE_METHODS, default="soft",
                   help="soft: mean of probabilities; hard: majority vote; weighted: convex "
                        "weights fitted on val; stacking: logistic regression fitted on val "
                        "(default: soft)")
    p.add_argument("--name", default="", help="a name for the ensemble run")


@command("ensemble")
def ensemble_command(args: argparse.Namespace) -> Result:
    from core.analyze.ensemble import create_ensemble, diversity
    from core.analyze.evaluate import evaluate

    with progress(args, "ensemble") as bar:
        run = create_ensemble(args.ws, args.members, args.method, args.name, progress=bar)
        evaluate(args.ws, run.id, "val", progress=bar)
        found = diversity(args.ws, run.id, "test")
    payload = {"run_id": run.id, "name": run.name, "kind": run.kind,
               "parent_run": run.parent_run, "status": run.status, **found}
    return Result(payload, render_text(payload))


def render_text(p: dict[str, Any]) -> str:
    lines = [f"ensemble {p['run_id']} ({p['method']}) of {len(p['members'])} runs · "
             f"{p['split']} accuracy {p['ensemble_accuracy']:.4f}"]
    for member, weight in zip(p["members"], p["weights"], strict=True):
        lines.append(f"  {member}  accuracy {p['member_accuracy'][member]:.4f}"
                     + (f"  weight {weight:.3f}" if p["method"] == "weighted" else ""))
    lines.append("  disagreement (share of test samples two members predict differently):")
    for member, row in zip(p["members"], p["disagreement"], strict=True):
        lines.append(f"  {member}  " + " ".join(f"{d:.3f}" for d in row))
    return "\n".join(lines)
