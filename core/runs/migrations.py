"""The run store's schema, as numbered migrations that every store applies when it opens.

A store records each version it applied in ``schema_version``. Opening one applies what is
missing, in order, each version in one transaction under the ``schema`` lock (two processes that
start together apply it once); a store written by a newer Lab2Market is refused with one line,
never half-read. The statements are templates over the engine's types (``{real}``: REAL or
DOUBLE PRECISION, ...), so both engines get the same schema from one text.

To change the schema: append a migration; never edit one that has shipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.runs.db.base import Database, StoreSchemaTooNew, Tx


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    statements: tuple[str, ...]
    # Engines whose physical layout it changes (an index one planner uses and another would
    # not); the version is stamped on every engine, so the schema versions stay one sequence.
    dialects: tuple[str, ...] = ("sqlite", "postgresql")


_V1 = (
    """CREATE TABLE IF NOT EXISTS runs (
    id {key} PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at {real} NOT NULL,
    started_at {real},
    ended_at {real},
    pid INTEGER,
    pid_start TEXT,
    heartbeat {real},
    device TEXT,
    epoch INTEGER NOT NULL DEFAULT 0,
    total_epochs INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    best_metric {real},
    error TEXT,
    summary TEXT NOT NULL DEFAULT '{{}}',
    kind TEXT NOT NULL DEFAULT 'trained',
    parent_run TEXT
)""",
    "CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at)",
    """CREATE TABLE IF NOT EXISTS metrics (
    run_id {key} NOT NULL,
    step INTEGER NOT NULL,
    key {key} NOT NULL,
    value {real} NOT NULL,
    time {real} NOT NULL,
    PRIMARY KEY (run_id, key, step)
){without_rowid}""",
    """CREATE TABLE IF NOT EXISTS events (
    id {serial},
    run_id {key} NOT NULL,
    time {real} NOT NULL,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{{}}'
)""",
    "CREATE INDEX IF NOT EXISTS events_run ON events(run_id, id)",
    """CREATE TABLE IF NOT EXISTS artifacts (
    run_id {key} NOT NULL,
    kind {key} NOT NULL,
    path {key} NOT NULL,
    created_at {real} NOT NULL,
    PRIMARY KEY (run_id, kind, path)
)""",
    """CREATE TABLE IF NOT EXISTS settings (
    key {key} PRIMARY KEY,
    value TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS jobs (
    id {key} PRIMARY KEY,
    run_id {key} NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    heavy INTEGER NOT NULL DEFAULT 0,
    argv TEXT NOT NULL,
    status TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    result TEXT,
    pid INTEGER,
    pid_start TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at {real} NOT NULL,
    started_at {real},
    ended_at {real},
    updated_at {real} NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created_at)",
    "CREATE INDEX IF NOT EXISTS jobs_run ON jobs(run_id, kind, key, created_at)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, metrics, events, artifacts, settings, jobs", _V1),
    Migration(2, "jobs.executor: where each job runs (local, ray)",
              ("ALTER TABLE jobs ADD COLUMN executor TEXT NOT NULL DEFAULT 'local'",)),
    # A live chart asks for a run's rows newer than a step, every second: without this index
    # each poll read every row of the run (the key is run, key, step), so readers slowed down
    # as runs grew and took the CPU the writers needed. SQLite's planner keeps the primary key
    # for that query (it saves a sort), so there the index would only cost writes.
    Migration(3, "metrics by (run, step): polls for new rows read only the new rows",
              ("CREATE INDEX IF NOT EXISTS metrics_run_step ON metrics(run_id, step)",),
              dialects=("postgresql",)),
)
LATEST = MIGRATIONS[-1].version

# Every table of the schema with the columns that order it (its key): the copy between stores
# and its checksums go through this list.
TABLES: dict[str, tuple[str, ...]] = {
    "runs": ("id",), "metrics": ("run_id", "key", "step"), "events": ("id",),
    "artifacts": ("run_id", "kind", "path"), "settings": ("key",), "jobs": ("id",),
}

# Columns added to ``runs`` before the schema had versions: (column, definition). A SQLite
# workspace from then has no ``schema_version`` yet; it gets them before it is stamped 1.
_UNVERSIONED = (("kind", "TEXT NOT NULL DEFAULT 'trained'"), ("parent_run", "TEXT"))


def schema_version(db: Database) -> int:
    """The newest version applied to ``db`` (0: none)."""
    if not db.has_table("schema_version"):
        return 0
    row = db.one("SELECT MAX(version) FROM schema_version")
    return int(row[0] or 0)


def migrate(db: Database) -> int:
    """Bring ``db`` to :data:`LATEST`; returns the version it is at. Refuses a newer one."""
    current = schema_version(db)
    if current == LATEST:  # the common case: two cheap reads, no write lock
        return current
    _refuse_newer(db, current)
    return db.transaction(lambda tx: _apply(db, tx))


def _apply(db: Database, tx: Tx) -> int:
    db.lock(tx, "schema")  # re-read under the lock: another process may have just done it
    tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
               f"applied_at {db.types['real']} NOT NULL)")
    current = int(tx.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
    _refuse_newer(db, current)
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        for statement in migration.statements if db.dialect in migration.dialects else ():
            tx.execute(statement.format(**db.types))
        if migration.version == 1:
            _add_unversioned_columns(db, tx)
        tx.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                   (migration.version, time.time()))
    return LATEST


def _add_unversioned_columns(db: Database, tx: Tx) -> None:
    have = db.columns(tx, "runs")
    for column, definition in _UNVERSIONED:
        if column not in have:
            tx.execute(f"ALTER TABLE runs ADD COLUMN {column} {definition}")


def _refuse_newer(db: Database, current: int) -> None:
    if current > LATEST:
        raise StoreSchemaTooNew(
            f"the run store {db.display} has schema version {current}, newer than this "
            f"Lab2Market knows ({LATEST}): upgrade Lab2Market to open it.")
