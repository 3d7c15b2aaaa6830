"""The dialect seam under the run store: one interface, one SQLite and one PostgreSQL behind it.

The store writes each query once, with ``?`` placeholders and standard SQL (``INSERT ... ON
CONFLICT ... DO UPDATE`` is both engines' upsert). What genuinely differs is said here, as
attributes and methods of a :class:`Database`: case-insensitive ``LIKE``, row locks
(``FOR UPDATE [SKIP LOCKED]``), named locks that serialise the queue and the migrations, schema
types, and what "the server is gone for a moment" means (PostgreSQL retries with backoff).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from core.errors import UserError

T = TypeVar("T")

# Named locks (transaction-scoped): PostgreSQL advisory lock keys; SQLite's write lock already
# serialises every write transaction.
LOCKS = {"schema": 7_240_001, "queue": 7_240_002}


class StoreUnavailable(UserError):
    """The run store's server cannot be reached (after retrying with backoff)."""


class StoreSchemaTooNew(UserError):
    """The run store was written by a newer Lab2Market (a newer schema version)."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """A write transaction: statements with ``?`` placeholders."""

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class Row:
    """A result row readable by position and by column name, like ``sqlite3.Row``
    (``row[0]``, ``row["id"]``, ``dict(row)``, unpacking)."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]):
        self._index, self._values = index, values

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


class Database:
    """What the store needs of an engine. Subclasses: ``SqliteDatabase``, ``PostgresDatabase``.

    ``url``: what was asked for (None: the workspace's own SQLite file); ``display``: the same
    without a password, for messages.
    """

    dialect: str
    url: str | None
    display: str
    read_only = False
    like = "LIKE"  # case-insensitive for ASCII on SQLite; PostgreSQL says ILIKE
    for_update = ""  # row locks for a read-modify-write inside a transaction
    skip_locked = ""  # ... and for claiming: rows another transaction holds are skipped
    # Schema types, substituted into the migrations' templates.
    types: dict[str, str] = {}

    # -- reads (autocommit) and writes (one transaction each) ------------------------------------

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = self.query(sql, args)
        return rows[0] if rows else None

    def transaction(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` in one write transaction; on PostgreSQL it is re-run whole when the
        connection was lost, so ``fn`` must only touch the database."""
        raise NotImplementedError

    def write(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the number of rows it changed."""
        return self.transaction(lambda tx: tx.execute(sql, args).rowcount)

    def write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.transaction(lambda tx: tx.executemany(sql, rows))

    # -- what differs ----------------------------------------------------------------------------

    def lock(self, tx: Tx, name: str) -> None:
        """Hold the named lock (``LOCKS``) until ``tx`` ends."""

    def has_table(self, name: str) -> bool:
        raise NotImplementedError

    def columns(self, tx: Tx, table: str) -> set[str]:
        raise NotImplementedError

    def reset_sequence(self, tx: Tx, table: str, column: str) -> None:
        """After rows were copied in with explicit ids: the next generated id follows them."""

    def close(self) -> None:
        raise NotImplementedError
