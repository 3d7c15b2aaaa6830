"""Which engine holds the run store, chosen by URL.

No URL (the default): the SQLite file in the workspace. ``sqlite:///PATH``: another SQLite file
(``sqlite:////abs/path.db``). ``postgresql://user@host:port/db``: PostgreSQL. psycopg is
imported only for a PostgreSQL URL, so the default costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import InvalidConfig
from core.runs.db.base import Database, Row, StoreSchemaTooNew, StoreUnavailable
from core.workspace import POSTGRES_SCHEMES, SQLITE_SCHEME, db_path

__all__ = ["Database", "Row", "StoreSchemaTooNew", "StoreUnavailable", "is_postgres",
           "open_database", "optuna_url", "sqlite_path"]


def is_postgres(url: str | None) -> bool:
    return bool(url) and url.startswith(POSTGRES_SCHEMES)


def optuna_url(url: str | None) -> str | None:
    """The same PostgreSQL database as an Optuna (SQLAlchemy) storage URL, on psycopg 3; None
    for a SQLite store (a study then keeps its journal file in its run folder)."""
    if not is_postgres(url):
        return None
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def sqlite_path(url: str | None, home: Path) -> Path:
    """The SQLite file a URL names (relative paths from the current folder)."""
    if not url:
        return db_path(home)
    return Path(url[len(SQLITE_SCHEME):]).expanduser().resolve()


def check_url(url: str | None) -> str | None:
    if url and not url.startswith((SQLITE_SCHEME, *POSTGRES_SCHEMES)):
        raise InvalidConfig(f"{url!r} is not a run store URL: use sqlite:///FILE or "
                            "postgresql://user@host:port/database.")
    return url or None


def open_database(url: str | None, home: Path, timeout: float = 30.0,
                  prepare: Callable[[Database], Any] | None = None) -> Database:
    """The engine for ``url``, prepared (migrated) by ``prepare``."""
    url = check_url(url)
    if is_postgres(url):
        from core.runs.db.postgres import PostgresDatabase

        db = PostgresDatabase(url)
        if prepare is not None:
            prepare(db)
        return db
    from core.runs.db.sqlite import SqliteDatabase

    return SqliteDatabase(sqlite_path(url, home), home, url, timeout, prepare)
