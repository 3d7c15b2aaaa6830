"""``python -m core store info | store migrate [--from URL] --to URL | executor [local|ray]
[--ray-address ADDR]``: where a workspace's history is kept and where its jobs run.

``info`` says which engine holds the workspace's history, its schema version and its counts.
``migrate`` copies that history (runs, metrics, events, artifacts index, settings, jobs; a study
is a run with its Optuna journal in its run folder) into another store, typically a new
PostgreSQL database when a team outgrows the SQLite file, and verifies the copy by counts and
checksums. The workspace folder (datasets, checkpoints) stays where it is. ``executor`` shows or
sets the workspace's executor (a team: ``ray``, with a PostgreSQL store).
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext

from core.cli.base import Result, add_command, add_group, command, progress
from core.workspace import EXECUTORS


def add_parsers(sub) -> None:
    group = add_group(sub, "store", "the run store: where it is, and moving it to PostgreSQL")
    add_command(group, "info", "the run store's engine, schema version and row counts",
                group="store")
    migrate = add_command(group, "migrate", "copy the workspace's history into another (empty) "
                                            "store, verified by counts and checksums",
                          group="store")
    migrate.add_argument("--from", dest="source", metavar="URL",
                         help="the store to copy (default: this workspace's, i.e. --store or "
                              "its SQLite file); sqlite:///FILE or postgresql://...")
    migrate.add_argument("--to", dest="target", metavar="URL", required=True,
                         help="an empty store, e.g. postgresql://user@host:5432/lab2market")
    executor = add_command(sub, "executor", "show or set where the workspace's jobs run")
    executor.add_argument("name", nargs="?", choices=EXECUTORS,
                          help="local processes or a Ray cluster (needs a PostgreSQL store)")
    executor.add_argument("--ray-address", metavar="ADDR",
                          help="the Ray cluster: auto (default: the one this machine joined), "
                               "host:6379, or http://host:8265")


@command("store info")
def store_info(args: argparse.Namespace) -> Result:
    from core.runs.migrations import TABLES, schema_version

    store = args.ws.store
    counts = {t: store._db.one(f"SELECT COUNT(*) FROM {t}")[0] for t in TABLES}
    payload = {"store": store.display_url, "engine": store.dialect,
               "schema_version": schema_version(store._db), "read_only": store.read_only,
               "rows": counts}
    text = (f"{store.dialect} store {store.display_url}, schema v{payload['schema_version']}\n"
            + "  ".join(f"{t}: {n}" for t, n in counts.items()))
    return Result(payload, text)


@command("store migrate")
def store_migrate(args: argparse.Namespace) -> Result:
    from core.runs.db import check_url
    from core.runs.store import Store
    from core.runs.transfer import copy_store

    source_url, target_url = check_url(args.source), check_url(args.target)
    home = args.ws.home
    with Store(home, url=source_url) if source_url else nullcontext(args.ws.store) as source, \
            Store(home, url=target_url) as target, \
            progress(args, "migrate") as bar:
        report = copy_store(source, target, progress=bar)
        payload = {"from": source.display_url, "to": target.display_url, "tables": report}
    rows = sum(t["rows"] for t in report.values())
    text = (f"Copied {rows} rows from {payload['from']} to {payload['to']}; counts and "
            f"checksums match for {', '.join(report)}.\nPoint the dashboard and the workers at "
            f"it: --store {payload['to']} (or LAB2MARKET_STORE).")
    return Result(payload, text)


@command("executor")
def executor(args: argparse.Namespace) -> Result:
    from core.runs.executors import configure

    store = args.ws.store
    payload = {**configure(store, args.name, args.ray_address), "store": store.display_url}
    where = f" at {payload['ray_address']}" if payload["executor"] == "ray" else ""
    return Result(payload, f"jobs run on {payload['executor']}{where}; "
                           f"store {store.display_url}")
