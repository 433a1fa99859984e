"""What one worker process of a distributed executor does (the Ray actors wrap a :class:`Worker`).

A worker builds its own :class:`~mediatable.session.Session` from the driver's settings, passed by
value: its own catalog connections, its own file cache (the cache of the machine it runs on, shared
with the other processes there), its own object stores and uploads. Nothing live — no session, engine
or lease — ever crosses from the driver. It knows no Ray: the same code runs under any scheduler.

Lifecycle: built once per worker process and kept for the worker's life, so functions that load a
model load it once per worker; :meth:`Worker.close` releases the session.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from mediatable.catalog.catalog import read_only
from mediatable.catalog.model import V_MIN
from mediatable.config import Settings
from mediatable.exec import compute
from mediatable.exec.executors.jobs import Job
from mediatable.exec.executors.staging import Staging
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exprs import CellError
from mediatable.session import Session

ERROR = "__mediatable_cell_error__"  # marks an error sent back in place of a value


def worker_settings(settings: Settings, cpus: int = 1) -> Settings:
    """The driver's settings as a worker uses them: computes here (`local`), on `cpus` threads, no bars."""
    return dataclasses.replace(settings, executor="local", compute_workers=max(1, cpus), progress=False)


@dataclasses.dataclass
class RangeDone:
    """What a worker reports for one range: rows in it, values it computed and wrote, errors among them."""

    rows: int
    computed: int
    written: int
    errors: int
    pid: int


class Worker:
    """One worker's state and operations (see the module docstring).

    Examples:
        >>> import tempfile
        >>> from mediatable.config import load_settings
        >>> worker = Worker(load_settings(tempfile.mkdtemp(), environ={}))
        >>> worker.ready() == os.getpid()
        True
        >>> worker.close()
    """

    def __init__(self, settings: Settings, cpus: int = 1) -> None:
        self.session = Session(worker_settings(settings, cpus))
        self._computed = 0  # rows of the current range computed so far (what progress() reports)

    def ready(self) -> int:
        """The worker's process id, once its session is up."""
        return os.getpid()

    def progress(self) -> int:
        """Rows of the range :meth:`fill` works on that are computed so far (callable while it runs)."""
        return self._computed

    def _advance(self, rows: int) -> None:
        self._computed += rows

    def fill(self, job: Job, rowids: Sequence[int]) -> RangeDone:
        """Compute the job's columns for the stored rows `rowids` not staged yet, and stage them in one transaction.

        Raises:
            CatalogError: the table's schema changed since the job was planned.
            ComputeError: a column with `on_error='abort'` failed (nothing of this range is staged).
        """
        session = self.session
        self._computed = 0
        meta, columns = job.load(session.catalog)
        stage = Staging(job)
        sql = TableSql(meta)
        with read_only(session.engine) as conn:
            todo = sorted(set(rowids) - stage.present(conn, rowids, sql.table))
            rows = list(sql.read(conn, compute.referenced(columns, meta), rowids=todo)) if todo else []
            versions = row_versions(conn, sql.table, todo)
        for row in rows:
            row[V_MIN] = versions[row[ROWID]]
        self._advance(len(rowids) - len(rows))  # staged by an earlier run
        if rows:
            with session.cache_lease() as lease:
                compute.compute(session, meta, lease, rows, columns, job.on_error, progress=self._advance)
        with session.engine.begin() as conn:
            written = stage.write(conn, rows)
        errors = sum(isinstance(row.get(c.name), CellError) for row in rows for c in columns)
        return RangeDone(len(rowids), len(rows), written, errors, os.getpid())

    def compute(self, job: Job, rows: list[dict[str, Any]]) -> list[list[Any]]:
        """Compute the job's columns for rows not stored yet (an insert); per row, each column's value.

        An error comes back as `(ERROR, errortype, errormsg)`; exceptions do not travel, their messages do.
        """
        meta, columns = job.load(self.session.catalog)
        with self.session.cache_lease() as lease:
            compute.compute(self.session, meta, lease, rows, columns, job.on_error)
        return [[_portable(row.get(c.name)) for c in columns] for row in rows]

    def close(self) -> None:
        self.session.close()


def row_versions(conn: sa.Connection, data: sa.Table, rowids: Sequence[int]) -> dict[int, int]:
    """Each row's version (`_v_min`: the version that last wrote it) in the data table `data`."""
    found: dict[int, int] = {}
    for start in range(0, len(rowids), 1000):
        chunk = list(rowids[start : start + 1000])
        query = sa.select(data.c[ROWID], data.c[V_MIN]).where(data.c[ROWID].in_(chunk))
        found.update({rowid: version for rowid, version in conn.execute(query)})
    return found


def _portable(value: Any) -> Any:
    return (ERROR, value.errortype, value.errormsg) if isinstance(value, CellError) else value


def from_portable(value: Any) -> Any:
    """Inverse of what :meth:`Worker.compute` sends: a value, or a CellError.

    Examples:
        >>> from_portable((ERROR, 'MediaNotFound', 'gone')), from_portable(3)
        (CellError(MediaNotFound: gone), 3)
    """
    if isinstance(value, tuple) and len(value) == 3 and value[0] == ERROR:
        return CellError(value[1], value[2])
    return value
