"""Where workers write the values they computed, before the driver stores them in the table.

Each :class:`~mediatable.exec.executors.jobs.Job` gets one staging table in the catalog's database,
`mt_fill_<job key>`: one row per table row (`_rowid`, the primary key) with each column's value and
error, and the row's version when its inputs were read (`_v`, the data table's `_v_min`). Workers
write a range in one transaction with an upsert that skips rows already staged from the same row
version, so a retried range never writes a value twice, and a range cut short by a killed worker
writes nothing. A staged value counts only while its row is unchanged: a row updated since is
computed again.
The driver copies the staged values into the table in the operation's own transaction and then
drops the staging table; until then the table itself is untouched, so a driver that dies leaves it
as it was, and the same work asked again (same job key) computes only the rows not yet staged.

`mt_fill_jobs` lists the staging tables with their table and schema version; staging tables of a
table whose schema changed since can never be used again and are dropped when the next job of that
table opens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mediatable import types as ts
from mediatable.catalog.model import V_MIN
from mediatable.exec.executors.jobs import Job
from mediatable.exec.rows import ROWID
from mediatable.exprs import CellError

_BATCH = 1000
_registry_metadata = sa.MetaData()
JOBS = sa.Table(
    "mt_fill_jobs",
    _registry_metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("table_id", sa.Integer, nullable=False, index=True),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("columns", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


class Staging:
    """The staging table of one job (see the module docstring).

    Examples:
        >>> from mediatable.exec.executors.jobs import ColumnSpec
        >>> engine = sa.create_engine("sqlite://")
        >>> job = Job(1, "t", 1, (ColumnSpec("w", {"type": "Int"}, {"k": "lit", "v": 1}),), None)
        >>> stage = Staging(job)
        >>> stage.open(engine)
        >>> with engine.begin() as conn:
        ...     failed = CellError("E", "bad")
        ...     stage.write(conn, [{"_rowid": 1, "_v_min": 4, "w": 7}, {"_rowid": 2, "_v_min": 4, "w": failed}])
        ...     stage.write(conn, [{"_rowid": 1, "_v_min": 4, "w": 8}])  # staged from that row version: skipped
        ...     stage.write(conn, [{"_rowid": 2, "_v_min": 5, "w": 9}])  # the row changed since: staged anew
        2
        0
        1
        >>> with engine.connect() as conn:
        ...     rows = [{"_rowid": 1}, {"_rowid": 2}, {"_rowid": 3}]
        ...     stage.read_into(conn, rows), rows[0], rows[1]["w"]
        ([3], {'_rowid': 1, 'w': 7}, 9)
        >>> stage.drop(engine)
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.types = [ts.type_from_dict(c.col_type) for c in job.columns]
        columns: list[sa.Column[Any]] = [
            sa.Column(ROWID, sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("_v", sa.Integer, nullable=False),
        ]
        for index, col_type in enumerate(self.types):
            columns += [
                sa.Column(f"v{index}", col_type.sql_type(), nullable=True),
                sa.Column(f"t{index}", sa.String(128), nullable=True),
                sa.Column(f"m{index}", sa.Text, nullable=True),
            ]
        self.table = sa.Table(f"mt_fill_{job.key}", sa.MetaData(), *columns)

    def open(self, engine: sa.Engine) -> None:
        """Create the staging table (if this job has none yet) and drop the table's stale ones."""
        job = self.job
        stamp = job.schema_version
        with engine.begin() as conn:
            _registry_metadata.create_all(conn, checkfirst=True)
            stale = conn.execute(
                sa.select(JOBS.c.key).where(JOBS.c.table_id == job.table_id, JOBS.c.schema_version != stamp)
            ).scalars()
            for key in list(stale):
                _drop(conn, key)
            self.table.create(conn, checkfirst=True)
            if conn.execute(sa.select(JOBS.c.key).where(JOBS.c.key == job.key)).first() is None:
                conn.execute(
                    JOBS.insert().values(
                        key=job.key,
                        table_id=job.table_id,
                        schema_version=stamp,
                        columns=", ".join(job.names),
                        created_at=dt.datetime.now(dt.UTC),
                    )
                )

    def present(self, conn: sa.Connection, rowids: Iterable[int], data: sa.Table) -> set[int]:
        """The rowids among `rowids` whose values are staged from the row's current version in `data`."""
        key = self.table.c[ROWID]
        current = sa.select(key).join(data, (data.c[ROWID] == key) & (data.c[V_MIN] == self.table.c["_v"]))
        found: set[int] = set()
        for chunk in _chunks(list(rowids)):
            found.update(conn.execute(current.where(key.in_(chunk))).scalars())
        return found

    def write(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> int:
        """Stage each row's values (dicts with `_rowid` and `_v_min`); rows staged from the same row version
        are left as they are. Returns how many were written."""
        if not rows:
            return 0
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(self.table)
        replace = {c.name: insert.excluded[c.name] for c in self.table.columns if c.name != ROWID}
        statement = insert.on_conflict_do_update(
            index_elements=[ROWID], set_=replace, where=self.table.c["_v"] != insert.excluded["_v"]
        ).returning(self.table.c[ROWID])
        written = 0
        for chunk in _chunks([self._params(row) for row in rows]):
            written += len(conn.execute(statement, chunk).all())
        return written

    def read_into(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Put the staged values into `rows` (dicts with `_rowid`); returns the rowids that have none."""
        by_id = {row[ROWID]: row for row in rows}
        missing = set(by_id)
        for chunk in _chunks(list(by_id)):
            for record in conn.execute(sa.select(self.table).where(self.table.c[ROWID].in_(chunk))).mappings():
                row = by_id[record[ROWID]]
                missing.discard(record[ROWID])
                for index, (spec, col_type) in enumerate(zip(self.job.columns, self.types, strict=True)):
                    errortype = record[f"t{index}"]
                    if errortype is not None:
                        row[spec.name] = CellError(errortype, record[f"m{index}"] or "")
                    else:
                        row[spec.name] = col_type.from_sql(record[f"v{index}"])
        return sorted(missing)

    def count(self, conn: sa.Connection) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())

    def drop(self, engine: sa.Engine) -> None:
        """Drop the staging table and its registry entry (after the values are stored, or are useless)."""
        with engine.begin() as conn:
            _drop(conn, self.job.key)

    def _params(self, row: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {ROWID: row[ROWID], "_v": row[V_MIN]}
        for index, (spec, col_type) in enumerate(zip(self.job.columns, self.types, strict=True)):
            value = row.get(spec.name)
            error = value if isinstance(value, CellError) else None
            params[f"v{index}"] = None if error is not None or value is None else col_type.to_sql(value)
            params[f"t{index}"] = error.errortype[:128] if error is not None else None
            params[f"m{index}"] = error.errormsg if error is not None else None
        return params


def staged_jobs(engine: sa.Engine) -> list[dict[str, Any]]:
    """The jobs that have staging tables (unfinished or interrupted runs): key, table_id, columns, created_at."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(JOBS.name):
            return []
        return [dict(r) for r in conn.execute(sa.select(JOBS).order_by(JOBS.c.created_at)).mappings()]


def _drop(conn: sa.Connection, key: str) -> None:
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {conn.dialect.identifier_preparer.quote('mt_fill_' + key)}")
    conn.execute(JOBS.delete().where(JOBS.c.key == key))


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]
