"""``python -m core tune | studies | study STUDY | promote STUDY`` (and ``_tune``, the body of a
study's driver job). ``cancel STUDY`` and ``resume STUDY [--trials N]`` are the runs commands,
which hand a study to :mod:`core.tune`."""

from __future__ import annotations

import argparse
import sys

from core.cli.base import Result, add_command, command, follow_run, progress
from core.cli.flags import add_config_flags, config_from_args
from core.errors import InvalidConfig
from core.runs import reconcile
from core.tune.space import KINDS
from core.tune.spec import EPOCH_METRICS, MODEL_METRICS, PRUNERS, SAMPLERS
from core.workspace import Workspace


def add_parsers(sub) -> None:
    p = add_command(sub, "tune", "search hyperparameters with Optuna; every trial is a real run "
                                 "(blocking, or --detach)")
    p.add_argument("--trials", type=int, help="how many trials (default: 20; a grid: all of it)")
    p.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default: tpe")
    p.add_argument("--pruner", choices=PRUNERS, help="default: median (none for several "
                                                     "metrics)")
    p.add_argument("--metric", default="val/acc", help="the objective, or several comma-"
                   f"separated: first one of {', '.join(EPOCH_METRICS)}, then any of "
                   f"{', '.join(MODEL_METRICS)} (default: val/acc)")
    p.add_argument("--direction", help="maximize or minimize, one per metric (default: "
                                       "maximize accuracies, minimize the rest)")
    p.add_argument("--parallel", type=int, default=1, help="trials in flight at once (the "
                                                           "queue may run fewer); default 1")
    p.add_argument("--param", action="append", default=[], metavar="NAME=KIND:ARGS",
                   help=f"a search-space row, KIND one of {', '.join(KINDS)}: "
                        "lr=loguniform:1e-4:1e-1, batch_size=choice:32,64, epochs=int:2:5, "
                        "augment=choice:none,flip+crop (default: rows for the model)")
    p.add_argument("--storage", metavar="URL", help="an Optuna RDB URL shared by workers on "
                   "other machines (default: a journal file in the study's folder)")
    p.add_argument("--config", help="a run's config.json the trials start from (flags "
                                    "override it)")
    p.add_argument("--name", default="", help="a label for the study")
    p.add_argument("--detach", action="store_true", help="run in the background")
    add_config_flags(p)  # every train flag, fixed for all trials; --seed seeds the sampler too
    add_command(sub, "studies", "list tuning studies").add_argument("--limit", type=int,
                                                                    default=50)
    add_command(sub, "study", "show a study: state, best trial, every trial").add_argument(
        "study")
    pro = add_command(sub, "promote", "train a full run with a study's best params (prints its "
                                      "run id)")
    pro.add_argument("study")
    pro.add_argument("--epochs", type=int, help="train this long (default: the trials' epochs)")
    pro.add_argument("--trial", type=int, help="promote this trial number instead of the best")
    add_command(sub, "_tune", None).add_argument("study")  # internal: a study's driver job


def study_from_args(args: argparse.Namespace):
    """The base config and the study settings the flags describe."""
    from core.data import get_info
    from core.models import get_spec
    from core.tune import StudySpec, default_direction, default_space, default_trials, parse_param

    base = config_from_args(args)
    metrics = [m.strip() for m in args.metric.split(",") if m.strip()]
    directions = [d.strip() for d in args.direction.split(",")] if args.direction else \
        [default_direction(m) for m in metrics]
    if args.param:
        space = [parse_param(text, base) for text in args.param]
    else:
        info = get_info(args.ws, base.data.dataset)
        space = default_space(base, info.modality, get_spec(base.model.name))
    pruner = args.pruner or ("none" if len(metrics) > 1 else "median")
    spec = StudySpec(metrics=metrics, directions=directions, sampler=args.sampler, pruner=pruner,
                     n_trials=args.trials or default_trials(args.sampler, space),
                     timeout=args.timeout, parallel=args.parallel,
                     seed=base.train.seed,  # --seed: the trials' and the sampler's
                     storage=args.storage, params=[p.to_dict() for p in space])
    return base, spec.validate()


@command("tune")
def tune(args: argparse.Namespace) -> Result:
    from core.tune import launch_study

    if args.trials is not None and args.trials < 1:
        raise InvalidConfig(f"--trials must be >= 1, got {args.trials}")
    base, spec = study_from_args(args)
    study = launch_study(args.ws.store, base, spec, name=args.name)
    if args.detach:
        result = study_result(args.ws, study.id)
        result.text = (f"Launched study {study.id} in the background (`python -m core study "
                       f"{study.id}`)\n{result.text}")
        return result
    print(f"study {study.id}", file=sys.stderr)
    follow_study(args.ws, study.id)
    return study_result(args.ws, study.id, as_reported=True)


def follow_study(ws: Workspace, study_id: str) -> None:
    """Wait for the study to end, one bar over its trials; Ctrl-C cancels it (its trials keep
    their checkpoints: ``resume`` continues)."""
    from core.tune import cancel_study

    store = ws.store  # a study's epoch counts its ended trials, its total its budget
    follow_run(store, study_id, "trial", lambda study: (
        study.status, study.total_epochs or None, study.epoch),
        lambda: cancel_study(store, study_id), interval=0.5)


def study_result(ws: Workspace, study_id: str, as_reported: bool = False) -> Result:
    """A study as ``study`` prints it; exit 0 unless it failed or was interrupted.
    ``as_reported``: as its driver reported it at its end, when it ran to its budget."""
    from core.tune import render, study_summary
    from core.tune.report import reported_summary

    summary = (reported_summary(ws.store, study_id) if as_reported else None) \
        or study_summary(ws.store, study_id)
    return Result(summary, render(summary), 1 if summary["state"] in ("failed",
                                                                       "interrupted") else 0)


@command("studies")
def studies(args: argparse.Namespace) -> Result:
    from core.tune import list_studies, sync_study

    store = args.ws.store
    reconcile(store)
    found = [sync_study(store, s.id) for s in list_studies(store, args.limit)]
    rows = [{"study_id": s.id, "name": s.name, "status": s.status, "dataset": s.dataset,
             "model": s.model, "trials_ended": s.epoch, "n_trials": s.total_epochs,
             "best": s.best_metric, "metric": s.config["train"]["monitor"],
             "created_at": s.created_at} for s in found]
    lines = [f"{r['study_id']}  {r['status']:11} {r['dataset']:12} {r['model']:14} trials "
             f"{r['trials_ended']}/{r['n_trials']}  best {r['metric']} "
             f"{'-' if r['best'] is None else format(r['best'], '.4f')}" for r in rows]
    return Result({"studies": rows}, "\n".join(lines) or "no studies yet")


@command("study")
def study(args: argparse.Namespace) -> Result:
    from core.tune import get_study

    reconcile(args.ws.store)
    get_study(args.ws.store, args.study)  # a clear error for a run that is not a study
    return study_result(args.ws, args.study)


@command("promote")
def promote(args: argparse.Namespace) -> Result:
    from core.cli.runs import run_payload
    from core.tune import promote as promote_best

    run = promote_best(args.ws.store, args.study, epochs=args.epochs, number=args.trial)
    return Result(run_payload(run), run.id)


@command("_tune")
def driver(args: argparse.Namespace) -> Result:
    from core.tune.driver import drive

    with progress(args, f"study {args.study}") as bar:
        result = drive(args.ws, args.study, bar)
    args.job_status = result["status"]  # cancelled when stopped by a cancel
    return Result(result, f"study {args.study}: driver {result['status']}")
