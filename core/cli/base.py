"""What every command module shares: the registry, the global options, results and progress.

Command modules import from here, never from ``core.cli.main`` (which imports them), so the
parser and the commands do not import each other. A command module defines
``add_parsers(sub)`` (its sub-commands, made with ``add_command``/``add_group``) and its
functions, registered with ``@command(key)``. A function returns a ``Result``, which the
dispatch prints (``emit``), or a bare exit code when it has nothing to print.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.workspace import EXECUTORS, POSTGRES_SCHEMES, SQLITE_SCHEME

Handler = Callable[[argparse.Namespace], "Result | int"]
COMMANDS: dict[str, Handler] = {}


def command(key: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the body of the sub-command ``key`` (e.g. ``"datasets list"``)."""
    def register(fn: Handler) -> Handler:
        if key in COMMANDS:
            raise ValueError(f"two functions for the command {key!r}")
        COMMANDS[key] = fn
        return fn
    return register


@dataclass
class Result:
    """What a command produced: ``payload`` for ``--json`` (and a background job's result),
    ``text`` for a person, and the exit ``code``."""

    payload: Any
    text: str = ""
    code: int = 0


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """Print the result on stdout: one JSON object with ``--json``, else ``text``."""
    args.result = payload  # kept as the job's result when run as a background job
    print(json.dumps(payload, default=str) if args.json else text)


def progress(args: argparse.Namespace, desc: str):
    """The progress callback a command should use: tqdm on stderr, plus the job's row if any."""
    from core.runs.body import JobProgress

    job = getattr(args, "job", None)
    return JobProgress(desc, args.ws.store if job else None, job)


# -- the parser's building blocks ----------------------------------------------------------------


def add_global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """``--home``, ``--json``, ``--store``, ``--executor`` and the hidden ``--job``.

    They are accepted on the top parser and on every sub-command, before or after it. Only the
    top parser has real defaults: argparse copies a sub-parser's whole namespace, defaults
    included, over the outer one, so a sub-parser default would silently undo
    ``python -m core --home W datasets list``. ``SUPPRESS`` leaves an option the user did not
    give at this level out of the namespace, and the outer value stands.
    """
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--home", default=default(None),
                        help="workspace folder (default: $LAB2MARKET_HOME or ./workspace)")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="print one JSON object on stdout")
    parser.add_argument("--store", metavar="URL", type=_store_url, default=default(None),
                        help="run store URL: postgresql://user@host:port/db for a team "
                             "(default: $LAB2MARKET_STORE, else the SQLite file in the "
                             "workspace)")
    parser.add_argument("--executor", choices=EXECUTORS, default=default(None),
                        help="where the jobs this command starts run: local processes or a "
                             "Ray cluster (default: $LAB2MARKET_EXECUTOR, else the workspace "
                             "setting, else local)")
    # Set by the job dispatcher (core.runs.jobs): this process is the body of that job.
    parser.add_argument("--job", default=default(None), help=argparse.SUPPRESS)


def _store_url(text: str) -> str:
    if not text.startswith((SQLITE_SCHEME, *POSTGRES_SCHEMES)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a store URL (sqlite:///FILE or postgresql://...)")
    return text


_COMMON: list[argparse.ArgumentParser] = []


def _common() -> argparse.ArgumentParser:
    """The parent parser of every sub-command: the global options with ``SUPPRESS`` defaults."""
    if not _COMMON:
        parent = argparse.ArgumentParser(add_help=False)
        add_global_options(parent, top=False)
        _COMMON.append(parent)
    return _COMMON[0]


def add_command(sub: Any, name: str, help: str | None, group: str = "",
                **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command parser dispatched to the function registered as ``"{group} {name}"``.

    ``help=None`` keeps it out of ``--help`` (an internal command).
    """
    if help is not None:
        kwargs.update(help=help, description=help)
    parser = sub.add_parser(name, parents=[_common()], **kwargs)
    parser.set_defaults(command_key=f"{group} {name}".strip())
    return parser


def add_group(sub: Any, name: str, help: str) -> Any:
    """A sub-command with sub-commands of its own (``datasets list``); returns their ``sub``."""
    parser = sub.add_parser(name, parents=[_common()], help=help, description=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def follow_run(store: Any, run_id: str, unit: str, describe: Callable[[Any], tuple],
               on_interrupt: Callable[[], Any], interval: float = 0.3) -> Any:
    """Wait until run ``run_id`` (a training, a CV parent, a study) ends, with one progress bar
    on stderr: ``describe(run)`` gives its (text, total or None, done). Each pass reconciles, so
    the queue moves on and a parent's status is written from its children. Returns the ended
    run; Ctrl-C calls ``on_interrupt`` (a cancel) and returns what it returns."""
    import sys

    from tqdm import tqdm

    from core.runs import TERMINAL, reconcile
    from core.runs.waiting import bell, ended, run_or_jobs_changed, wait_until

    with tqdm(desc=run_id, unit=unit, file=sys.stderr, dynamic_ncols=True) as bar, \
            bell(store, ended(run_id)) as run_bell:
        try:
            while True:
                # What the wait compares with is read before this pass: a change during the pass
                # (the last job of a parent ending after reconcile read it) ends the wait at
                # once, not a whole interval later.
                changed = run_or_jobs_changed(store, run_id)
                reconcile(store)
                run = store.get_run(run_id)
                text, bar.total, bar.n = describe(run)
                bar.set_description(f"{run_id} {text}")
                bar.refresh()
                if run.status in TERMINAL:
                    return run
                wait_until(changed, interval, bell=run_bell)  # its end at once
        except KeyboardInterrupt:
            return on_interrupt()
