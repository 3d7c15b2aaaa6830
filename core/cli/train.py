"""``python -m core train ...`` (a flag per config field) and ``python -m core models``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from core.cli.base import Result, add_command, command
from core.cli.flags import add_config_flags, config_from_args
from core.cli.runs import follow, report, run_payload
from core.errors import InvalidConfig


def add_parsers(sub) -> None:
    add_command(sub, "models", "list the registered models").set_defaults(workspace=False)
    p = add_command(sub, "train", "train a model (blocking, or --detach)")
    p.add_argument("--config", help="a run's config.json to start from (flags override it)")
    p.add_argument("--name", default="", help="a label for the run")
    p.add_argument("--detach", action="store_true", help="run in the background")
    p.add_argument("--create-only", action="store_true",
                   help="record the run and print its id without starting it (to launch it "
                        "yourself, e.g. with torchrun on several nodes)")
    add_config_flags(p)
    t = add_command(sub, "trackers", "show or set where every run of the workspace also logs "
                                     "(MLflow, TensorBoard); a run's --mlflow/--tensorboard "
                                     "overrides it")
    t.add_argument("--mlflow", metavar="URI|off", help="MLflow tracking URI, or off")
    t.add_argument("--tensorboard", metavar="DIR|off", help="TensorBoard log folder, or off")


@command("models")
def models_list(args: argparse.Namespace) -> Result:
    from core.models import list_models

    specs = list_models()
    return Result({"models": [asdict(s) for s in specs]},
                  "\n".join(f"{s.name:20} {','.join(s.modalities):14} {s.description}"
                            for s in specs))


@command("train")
def train(args: argparse.Namespace) -> Result:
    from core import runs

    config = config_from_args(args)
    store = args.ws.store
    if config.data.cv is not None and config.data.fold is None:  # K fold runs under a parent
        if args.create_only:
            raise InvalidConfig("--create-only records one run; --cv K makes K of them: drop "
                                "one, or add --fold I to record that fold alone.")
        from core.cli.crossval import train_cv

        return train_cv(args.ws, config, args.name, args.detach)
    if config.data.train_on_val:  # refused before it is queued; the user is told what it means
        from core.data.folds import TRAIN_ON_VAL_NOTE, check_train_on_val

        check_train_on_val(args.ws, config.data)
        print(TRAIN_ON_VAL_NOTE, file=sys.stderr)
    if args.create_only:
        run = runs.create_run(store, config, name=args.name)
        return Result(run_payload(run), run.id)
    run = runs.launch(store, config, name=args.name)
    if args.detach:
        return Result(run_payload(run), f"Launched {run.id} in the background "
                                        f"(`python -m core status {run.id}`)")
    print(f"run {run.id}", file=sys.stderr)
    return report(follow(store, run.id))


@command("trackers")
def trackers(args: argparse.Namespace) -> Result:
    from core.train.sinks import OFF, SETTING, TRACKERS, set_workspace_target

    store = args.ws.store
    for tracker in TRACKERS:
        value = getattr(args, tracker)
        if value is not None:
            set_workspace_target(store, tracker, value)
    found = {tracker: store.get_setting(SETTING.format(tracker)) or OFF for tracker in TRACKERS}
    return Result(found, "\n".join(f"{k:12} {v}" for k, v in found.items()))
