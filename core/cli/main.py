"""``python -m core``: every dashboard action is also a command.

stdout carries results (one JSON object with ``--json``); progress bars and logs go to stderr.
A ``UserError`` prints one line and exits 2. Heavy modules load inside the commands, so
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from core.config import AMP_MODES, OPTIMIZERS, SCHEDULERS, RunConfig
from core.errors import UserError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable:
        COMMANDS[name] = fn
        return fn
    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=(
        "Lab2Market: train, watch, evaluate and ship PyTorch classifiers."))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="workspace folder (default: $LAB2MARKET_HOME or "
                                       "./workspace)")
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    common.add_argument("--task", help=argparse.SUPPRESS)  # set by core.runs.tasks.launch_task
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ds = sub.add_parser("datasets", parents=[common], help="list or import datasets")
    ds_sub = ds.add_subparsers(dest="datasets_command", required=True)
    ds_sub.add_parser("list", parents=[common], help="built-in and imported datasets")
    imp = ds_sub.add_parser("import", parents=[common], help="import a folder, zip or CSV")
    imp.add_argument("name")
    imp.add_argument("--from", dest="source", required=True, help="DIR, ZIP or CSV")
    imp.add_argument("--target", help="label column (CSV)")

    sub.add_parser("models", parents=[common], help="list the registered models")
    _add_train_parser(sub, common)
    sub.add_parser("runs", parents=[common], help="list runs").add_argument(
        "--limit", type=int, default=50)
    for name, text in (("status", "show a run"), ("cancel", "stop a running run"),
                       ("delete", "delete a finished run and its files")):
        sub.add_parser(name, parents=[common], help=text).add_argument("run")
    res = sub.add_parser("resume", parents=[common], help="continue an interrupted or "
                                                          "cancelled run")
    res.add_argument("run")
    res.add_argument("--detach", action="store_true", help="resume in the background")
    job = sub.add_parser("_job", parents=[common])  # internal: the body of a background job
    job.add_argument("run")
    job.add_argument("--resume", action="store_true")
    for module in _extensions():
        module.add_parsers(sub, common)
    return parser


# Each later step (evaluate, explain, deploy, ...) keeps its commands in a module of its own that
# defines ``add_parsers(sub, common)`` and registers its functions with ``@command``.
EXTENSIONS = ("core.cli.evaluate", "core.cli.predict", "core.cli.deploy")


def _extensions() -> list:
    import importlib
    import importlib.util

    return [importlib.import_module(name) for name in EXTENSIONS
            if importlib.util.find_spec(name) is not None]


def _add_train_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", parents=[common], help="train a model (blocking, or --detach)")
    p.add_argument("--config", help="a run's config.json to start from (flags override it)")
    p.add_argument("--dataset")
    p.add_argument("--model", help="default: smallcnn for images, mlp for tables")
    p.add_argument("--name", default="", help="a label for the run")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--scheduler", choices=SCHEDULERS)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--amp", choices=AMP_MODES)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--max-grad-norm", type=float)
    p.add_argument("--patience", type=int, help="early stopping patience in epochs")
    p.add_argument("--monitor", help="metric for early stopping and best.pt (val/loss)")
    p.add_argument("--mode", choices=("min", "max"))
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--image-size", type=int)
    p.add_argument("--augment", help="comma-separated: flip,rotate,crop,color")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--pin-memory", action="store_true", default=None)
    p.add_argument("--pretrained", action="store_true", default=None,
                   help="torchvision weights from the local torch cache")
    p.add_argument("--weights", help="a torchvision state dict or another run's checkpoint")
    p.add_argument("--freeze-backbone", action="store_true", default=None)
    p.add_argument("--nproc", type=int, help="processes for distributed data parallel")
    p.add_argument("--detach", action="store_true", help="run in the background")
    p.add_argument("--create-only", action="store_true",
                   help="record the run and print its id without starting it (to launch it "
                        "yourself, e.g. with torchrun on several nodes)")


_FLAG_SECTIONS = {
    "data": ("dataset", "image_size", "num_workers", "pin_memory"),
    "model": ("pretrained", "weights", "freeze_backbone"),
    "train": ("epochs", "batch_size", "lr", "optimizer", "scheduler", "weight_decay",
              "label_smoothing", "amp", "grad_accum", "max_grad_norm", "patience", "monitor",
              "mode", "seed", "device", "nproc"),
}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """A config file (if any), then every flag the user gave on top of it."""
    raw = json.loads(open(args.config).read()) if args.config else RunConfig().to_dict()
    for section, names in _FLAG_SECTIONS.items():
        for name in names:
            value = getattr(args, name)
            if value is not None:
                raw[section][name] = value
    if args.augment is not None:
        raw["data"]["augment"] = [a.strip() for a in args.augment.split(",") if a.strip()]
    if args.model:
        raw["model"]["name"] = args.model
    elif not args.config:
        from core.data import get_info
        modality = get_info(raw["data"]["dataset"], args.home).modality
        raw["model"]["name"] = "mlp" if modality == "tabular" else "smallcnn"
    return RunConfig.from_dict(raw)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    key = args.command if args.command != "datasets" else f"datasets {args.datasets_command}"
    task = _TaskRecorder(args) if getattr(args, "task", None) else None
    try:
        code = COMMANDS[key](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code, error = exc.exit_code, str(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code, error = 130, "interrupted"
    except Exception as exc:
        if task:
            task.finish(1, f"{type(exc).__name__}: {exc}")
        raise
    else:
        error = None
    if task:
        task.finish(code, error)
    return code


class _TaskRecorder:
    """Marks the store's task row running, then completed (with the result) or failed."""

    def __init__(self, args: argparse.Namespace):
        import os

        from core.runs.processes import process_start_time
        from core.runs.store import Store

        self.args, self.store = args, Store(args.home)
        self.store.update_task(args.task, status="running", pid=os.getpid(),
                               pid_start=process_start_time(os.getpid()))

    def finish(self, code: int, error: str | None) -> None:
        if code == 0:
            self.store.update_task(self.args.task, status="completed",
                                   result=getattr(self.args, "result", None))
        else:
            self.store.update_task(self.args.task, status="failed",
                                   error=error or f"exited with status {code}")


def progress(args: argparse.Namespace, desc: str):
    """The progress callback a command should use: tqdm on stderr, plus the task row if any."""
    from core.runs.store import Store
    from core.runs.tasks import Progress

    task = getattr(args, "task", None)
    return Progress(desc, Store(args.home) if task else None, task)


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    args.result = payload  # kept as the task's result when run as a background task
    print(json.dumps(payload, default=str) if args.json else text)


# The commands live in core/commands.py to keep this module to the parser and the dispatch.
from core.cli import runs as _commands  # noqa: E402,F401  (registers the commands)
