"""``python -m core``: every dashboard action is also a command.

This module is the parser and the dispatch only; the commands live in one module per step
(``COMMAND_MODULES``). stdout carries results (one JSON object with ``--json``); progress bars
and logs go to stderr. A ``UserError`` (a full or read-only workspace included) prints one line
and exits 2. Heavy modules load inside the commands, so ``--help`` stays fast. The dispatch
opens the workspace once (``args.ws``, a ``core.workspace.Workspace``) and closes it after the
command; commands never open a store of their own.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys
from collections.abc import Callable

from core.cli.base import COMMANDS, Result, add_global_options, emit
from core.errors import UserError, workspace_error
from core.workspace import Workspace, home_path

# Every step's commands, in the order ``--help`` lists them. Each module defines
# ``add_parsers(sub)`` and registers its functions with ``@command``; a module that fails to
# import is a bug that stops the CLI, never a step that silently goes missing.
COMMAND_MODULES = (
    "core.cli.datasets",
    "core.cli.train",
    "core.cli.finders",
    "core.cli.runs",
    "core.cli.tune",
    "core.cli.evaluate",
    "core.cli.predict",
    "core.cli.ensemble",
    "core.cli.crossval",
    "core.cli.compress",
    "core.cli.deploy",
    "core.cli.store",
)


# Built once a process: a job forked from the warm parent (core.runs.warm) finds it ready, which
# saves each trial of a study ~13 ms of argparse. Parsing never changes a parser.
@functools.cache
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=(
        "Lab2Market: train, watch, evaluate and ship PyTorch classifiers. The global options "
        "(--home, --json, --store, --executor) go before or after the command."))
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return parser


def main(argv: list[str] | None = None, done: Callable[[int], None] | None = None) -> int:
    """Run one command; its exit status. ``done(status)`` is called as soon as the command's
    outcome is known, before the workspace closes (a warm child reports to its caller there:
    core.runs.warm_cli)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    args.ws = None
    try:
        code = _run(args)
        if done is not None:
            done(code)
        return code
    finally:
        if args.ws is not None:
            args.ws.close()


def _run(args: argparse.Namespace) -> int:
    body = None
    try:
        _check_scale_options(args)
        # A command that reads nothing of the workspace (``models``) does not create one.
        if getattr(args, "workspace", True):
            args.ws = Workspace.open(args.home, store=args.store, executor=args.executor)
        if args.job:
            from core.runs.body import JobBody

            body = JobBody(args.ws, args.job)
            if not body.start():  # cancelled before this process got here: nothing to do
                return 0
        code, error = _dispatch(args), None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code, error = 130, "interrupted"
    except Exception as exc:
        user_error = exc if isinstance(exc, UserError) else workspace_error(
            exc, home_path(args.home))
        if user_error is None:  # a bug: keep its traceback
            if body:
                _finish(body, args, 1, f"{type(exc).__name__}: {exc}")
            raise
        print(f"error: {user_error}", file=sys.stderr)
        code, error = user_error.exit_code, str(user_error)
    if body:
        _finish(body, args, code, error)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    outcome = COMMANDS[args.command_key](args)
    if isinstance(outcome, Result):
        emit(args, outcome.payload, outcome.text)
        return outcome.code
    return outcome


def _check_scale_options(args: argparse.Namespace) -> None:
    """``--executor ray`` needs a store every machine reaches (the cluster contract): refused
    in one line before anything is queued. ``--store`` and ``--executor`` then reach the
    workspace, and through it every job this command starts."""
    if args.executor:
        from core.runs.executors import check_cluster
        from core.workspace import resolve_store_url

        check_cluster(args.executor, resolve_store_url(args.store))


def _finish(body, args: argparse.Namespace, code: int, error: str | None) -> None:
    """Record the job's end (a training job ends as its run did: ``args.job_status``); a
    workspace that cannot be written any more only loses the row (reconcile marks it
    interrupted), it does not turn the command's error into a traceback."""
    try:
        body.finish(code, error, getattr(args, "result", None), getattr(args, "job_status", None))
    except Exception as exc:
        if workspace_error(exc) is None:
            raise
        logging.getLogger(__name__).warning("could not record the job's end: %s", exc)


def command_keys(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Every leaf sub-command's dispatch key -> its words (e.g. ``["datasets", "list"]``)."""
    found: dict[str, list[str]] = {}

    def walk(p: argparse.ArgumentParser, words: list[str]) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, words + [name])
        key = p.get_default("command_key")
        if key is not None:
            found[key] = words
    walk(parser, [])
    return found
