"""The catalog's SQLAlchemy engine: SQLite tuned for several processes, or PostgreSQL; read-only connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

READ_ONLY = "mediatable_read_only"


def read_only(engine: Engine) -> sa.Connection:
    """A connection for reading only: on SQLite it never takes the write lock.

    Examples:
        >>> with read_only(create_engine("sqlite://")) as conn:
        ...     conn.execute(sa.text("select 1")).scalar_one()
        1
    """
    return engine.connect().execution_options(**{READ_ONLY: True})


def create_engine(url: str) -> Engine:
    """An engine for the catalog URL, tuned for concurrent use by several processes.

    SQLite gets WAL and a busy timeout, so concurrent writers wait instead of failing.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()
            # Python's case mapping (SQLite's own lower/upper only know ASCII): filters pushed down to
            # SQL give exactly what the same expression gives in Python.
            dbapi_conn.create_function("lower", 1, _python_str(str.lower), deterministic=True)
            dbapi_conn.create_function("upper", 1, _python_str(str.upper), deterministic=True)

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn: Any) -> None:
            # Take the write lock at BEGIN: avoids deadlock-style SQLITE_BUSY on read->write upgrades.
            # A connection marked read-only (see `read_only`) begins deferred: in WAL mode it reads a
            # snapshot and never blocks writers, so a query can stream while its consumer writes.
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return sa.create_engine(url, pool_pre_ping=True)


def _python_str(method: Callable[[str], str]) -> Callable[[Any], Any]:
    return lambda value: method(value) if isinstance(value, str) else value
