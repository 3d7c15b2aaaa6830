"""Copy a workspace's history from one run store to another (``store migrate``), verified.

Every table of the schema (runs, metrics, events, artifacts index, settings, jobs) is copied in
key order, in chunks of one transaction each, into a store that must be empty; then both sides
are counted and checksummed table by table (a SHA-256 over the rows in key order, values
normalised so that the same row reads the same from SQLite and PostgreSQL). A difference is an
error that names the table; the source is never changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from core.errors import InvalidConfig, UserError
from core.runs.migrations import TABLES
from core.runs.store import Store

CHUNK = 5_000


class MigrationMismatch(UserError):
    """The copy does not match its source (counts or checksums)."""


def copy_store(source: Store, target: Store,
               progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Copy every row of ``source`` into the empty ``target``; returns, per table, the rows
    copied and the checksum both sides agree on."""
    if source.display_url == target.display_url:
        raise InvalidConfig("--from and --to are the same store; give another --to.")
    held = {t: _count(target, t) for t in TABLES}
    if any(held.values()):
        busy = ", ".join(f"{n} {t}" for t, n in held.items() if n)
        raise InvalidConfig(f"the target store {target.display_url} is not empty ({busy}): "
                            "migrate into a new, empty database.")
    total = sum(_count(source, t) for t in TABLES)
    done = 0
    for table in TABLES:
        done = _copy_table(source, target, table, done, total, progress)
    return verify(source, target)


def _copy_table(source: Store, target: Store, table: str, done: int, total: int,
                progress: Callable[[int, int, str], None] | None) -> int:
    columns = _columns(source, table)
    order = ", ".join(TABLES[table])
    insert = (f"INSERT INTO {table} ({', '.join(columns)}) "
              f"VALUES ({', '.join('?' * len(columns))})")
    offset = 0
    while True:
        rows = source._db.query(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order} "
                                "LIMIT ? OFFSET ?", (CHUNK, offset))
        if not rows:
            break
        target._db.write_many(insert, [tuple(r) for r in rows])
        offset += len(rows)
        done += len(rows)
        if progress:
            progress(done, total, table)
    if table == "events":  # new events after the copy get ids after the copied ones
        target._db.transaction(lambda tx: target._db.reset_sequence(tx, "events", "id"))
    return done


def verify(source: Store, target: Store) -> dict[str, Any]:
    """Counts and checksums of every table on both sides; MigrationMismatch if any differs."""
    report = {}
    for table in TABLES:
        columns = _columns(source, table)
        mine, theirs = _checksum(source, table, columns), _checksum(target, table, columns)
        if mine != theirs:
            raise MigrationMismatch(
                f"table {table}: the source has {mine[0]} rows (sha256 {mine[1][:12]}), the "
                f"target {theirs[0]} (sha256 {theirs[1][:12]}); the copy is incomplete, drop "
                "the target database and migrate again.")
        report[table] = {"rows": mine[0], "sha256": mine[1]}
    return report


def _columns(store: Store, table: str) -> list[str]:
    return sorted(store._db.transaction(lambda tx: store._db.columns(tx, table)))


def _count(store: Store, table: str) -> int:
    return store._db.one(f"SELECT COUNT(*) FROM {table}")[0]


def _checksum(store: Store, table: str, columns: list[str]) -> tuple[int, str]:
    digest, count, offset = hashlib.sha256(), 0, 0
    order = ", ".join(TABLES[table])
    while True:
        rows = store._db.query(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order} "
                               "LIMIT ? OFFSET ?", (CHUNK, offset))
        if not rows:
            return count, digest.hexdigest()
        for row in rows:
            digest.update(repr(tuple(_normal(v) for v in row)).encode())
        count += len(rows)
        offset += len(rows)


def _normal(value: Any) -> Any:
    """One spelling per value whichever engine read it (a REAL 2.0 and an INTEGER 2 agree)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return repr(float(value))
    return value
