"""A real PostgreSQL 15 server on 127.0.0.1 for the whole test session.

PostgreSQL refuses to run as root, and CI runs as root: the cluster is initialized and started as
the `postgres` system user (Debian's postgresql-15 package creates it) in a temp folder it owns.

Each test gets a database of its own, dropped when the test has ended (its sessions closed). The
cluster lives in memory (/dev/shm) where there is one: a database made on disk, written and then
dropped costs ~0.6 s (DROP DATABASE forces a checkpoint), ~0.06 s in memory; kept instead, the
session's ~200 databases (~10 MB and 300 files each) took 49 s to delete at the end of the run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_BIN = Path("/usr/lib/postgresql/15/bin")
_IN_MEMORY = Path("/dev/shm")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """initdb + pg_ctl in a temp folder; `new_database()` gives each test its own database."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL 15 binaries not found in {PG_BIN} (make test installs postgresql-15)")
        in_memory = _IN_MEMORY.is_dir() and os.access(_IN_MEMORY, os.W_OK)
        self.root = Path(tempfile.mkdtemp(prefix="mt-pg-", dir=_IN_MEMORY if in_memory else None))
        self.data = self.root / "data"
        self.port = _free_port()
        self._counter = itertools.count()
        self._made: list[str] = []  # databases not dropped yet
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
            self.root.chmod(0o755)

    def _run(self, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *args] if self._as_root else list(args)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "-l",
            str(self.root / "log"),
            "start",
        )

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its URL (dropped by :meth:`drop_databases`)."""
        name = f"mt_test_{next(self._counter)}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        self._made.append(name)
        return self.url(name)

    def drop_databases(self) -> None:
        """Drop the databases made so far, ending connections still open to them (e.g. of Ray workers)."""
        if not self._made:
            return
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                while self._made:
                    conn.exec_driver_sql(f"DROP DATABASE {self._made[-1]} WITH (FORCE)")
                    self._made.pop()
        finally:
            engine.dispose()


_RUNNING = pytest.StashKey[PostgresServer]()


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> Iterator[PostgresServer]:
    """A running PostgreSQL server (stopped at the end of the session)."""
    server = PostgresServer()
    server.start()
    pytestconfig.stash[_RUNNING] = server
    try:
        yield server
    finally:
        del pytestconfig.stash[_RUNNING]
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Once a test's fixtures are torn down (its sessions closed), drop the databases it was given."""
    try:
        return (yield)
    finally:
        server = item.config.stash.get(_RUNNING, None)
        if server is not None:
            server.drop_databases()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalog database: an SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()
