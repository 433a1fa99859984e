"""Table versions: every change of a table family takes the next version, under one lock.

A table and the views over it form a family with one version counter, kept on the family's root
row in `mt_tables`. A change (insert, update, delete, schema change) starts by locking that row
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds the database's
write lock), takes the next version and records it in `mt_versions`, all in the change's own
transaction: the change and its version commit together or not at all, and two changes of one
family never interleave.

Storage is proportional to what changed, never a copy: a row written at version `v` carries
`_v_min = v` in the data table; before a row is changed or deleted, its image moves to the
history table (`mt_t<id>_h`) with `_v_max = v`. A catalog column has the version range in which it
exists (`v_min`, `v_max`); dropped and renamed columns keep their SQL column while a version
reads them. So version `n` of a table is the data rows with `_v_min <= n` plus the history rows
with `_v_min <= n < _v_max`, seen through the columns that existed at `n`; and reverting the last
version `v` deletes the rows written at `v`, moves the images retired at `v` back, and restores
the columns' ranges.

Generated media files are never deleted by a change or a revert, so media of reverted rows stays
readable as long as any version refers to it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from mediatable.catalog import schema
from mediatable.catalog.model import ROWID, V_MAX, V_MIN, TableMeta
from mediatable.errors import ConcurrentChange

OPS = (
    "create",
    "create_view",
    "insert",
    "update",
    "delete",
    "recompute",
    "add_column",
    "drop_column",
    "rename_column",
)


def lock_family(conn: sa.Connection, root_id: int) -> tuple[int, int]:
    """Lock a family for the rest of the transaction; returns its (version, schema_version)."""
    row = conn.execute(
        sa.select(schema.tables.c.version, schema.tables.c.schema_version)
        .where(schema.tables.c.id == root_id)
        .with_for_update()
    ).one()
    return int(row.version), int(row.schema_version)


def begin_change(
    conn: sa.Connection,
    meta: TableMeta,
    op: str,
    *,
    summary: str = "",
    schema_change: bool = False,
    expect_schema_version: int | None = None,
) -> int:
    """Lock `meta`'s family, take and record the next version (op on `meta`); returns it.

    Raises:
        ConcurrentChange: `expect_schema_version` is given and another change of the family's schema
            committed since it was read.
    """
    version, schema_version = lock_family(conn, meta.root_id)
    if expect_schema_version is not None and schema_version != expect_schema_version:
        raise ConcurrentChange(
            f"another process changed the schema of {meta.path!r} (or a table or view of its family) while "
            f"this {op.replace('_', ' ')} was prepared; nothing was changed, try again",
            table=meta.path,
        )
    new_version = version + 1
    conn.execute(
        schema.tables.update()
        .where(schema.tables.c.id == meta.root_id)
        .values(version=new_version, schema_version=schema_version + (1 if schema_change else 0))
    )
    conn.execute(
        schema.versions.insert().values(
            root_id=meta.root_id,
            version=new_version,
            table_id=meta.id,
            created_at=dt.datetime.now(dt.UTC),
            op=op,
            summary=summary,
        )
    )
    return new_version


def note_rows(conn: sa.Connection, root_id: int, version: int, **counts: int) -> None:
    """Add row counts (`inserted=`, `updated=`, `deleted=`) to a version's record."""
    values = {name: getattr(schema.versions.c, name) + n for name, n in counts.items() if n}
    if values:
        conn.execute(
            schema.versions.update()
            .where(schema.versions.c.root_id == root_id, schema.versions.c.version == version)
            .values(values)
        )


def set_undo(conn: sa.Connection, root_id: int, version: int, undo: dict[str, Any], summary: str) -> None:
    """Record what reverting `version` needs beyond row images and column ranges."""
    conn.execute(
        schema.versions.update()
        .where(schema.versions.c.root_id == root_id, schema.versions.c.version == version)
        .values(undo=undo, summary=summary)
    )


def retire_rows(conn: sa.Connection, meta: TableMeta, rowids: Sequence[int], version: int) -> None:
    """Before rows change or go at `version`, keep their current images in the history table.

    Rows already written at `version` (by an earlier step of the same change) keep their first image only.
    """
    data, history = meta.sql_table(), meta.history_table()
    names = [c.name for c in data.columns]
    for start in range(0, len(rowids), 1000):
        chunk = list(rowids[start : start + 1000])
        select = sa.select(*[data.c[n] for n in names], sa.literal(version).label(V_MAX)).where(
            data.c[ROWID].in_(chunk), data.c[V_MIN] != version
        )
        conn.execute(history.insert().from_select([*names, V_MAX], select))


def rows_at(meta: TableMeta, version: int) -> sa.Subquery:
    """The rows of `meta`'s own table as of `version`, with the data table's column names."""
    data, history = meta.sql_table(), meta.history_table()
    names = [c.name for c in data.columns]
    live = sa.select(*[data.c[n] for n in names]).where(data.c[V_MIN] <= version)
    old = sa.select(*[history.c[n] for n in names]).where(history.c[V_MIN] <= version, history.c[V_MAX] > version)
    return sa.union_all(live, old).subquery(f"{data.name}_v{version}")


def revert_rows(conn: sa.Connection, meta: TableMeta, version: int) -> None:
    """Undo what `version` did to the rows of `meta`'s own table (rows written, images retired)."""
    data, history = meta.sql_table(), meta.history_table()
    conn.execute(data.delete().where(data.c[V_MIN] == version))
    names = [c.name for c in data.columns]
    conn.execute(
        data.insert().from_select(names, sa.select(*[history.c[n] for n in names]).where(history.c[V_MAX] == version))
    )
    conn.execute(history.delete().where(history.c[V_MAX] == version))


def history(conn: sa.Connection, meta: TableMeta) -> list[dict[str, Any]]:
    """The versions that changed `meta` (its own changes and those of its bases), newest first."""
    ids = list(meta.owner_ids())
    query = (
        sa.select(schema.versions)
        .where(
            schema.versions.c.root_id == meta.root_id,
            schema.versions.c.table_id.in_(ids) | (schema.versions.c.op == "create_view"),
            schema.versions.c.version >= meta.created_version,
        )
        .order_by(schema.versions.c.version.desc())
    )
    if meta.at_version is not None:
        query = query.where(schema.versions.c.version <= meta.at_version)
    out = []
    for row in conn.execute(query):
        if row.op == "create_view" and row.table_id != meta.id:
            continue
        out.append(
            {
                "version": row.version,
                "created_at": row.created_at,
                "change": row.op,
                "summary": row.summary,
                "inserted": row.inserted,
                "updated": row.updated,
                "deleted": row.deleted,
            }
        )
    return out


def last_version(conn: sa.Connection, root_id: int) -> Any:
    """The record of a family's latest version."""
    return conn.execute(
        sa.select(schema.versions)
        .where(schema.versions.c.root_id == root_id)
        .order_by(schema.versions.c.version.desc())
        .limit(1)
    ).one()


def forget_version(conn: sa.Connection, root_id: int, version: int) -> None:
    """After a revert: the family's counter goes back to `version - 1`; its schema version still moves on."""
    conn.execute(
        schema.versions.delete().where(schema.versions.c.root_id == root_id, schema.versions.c.version == version)
    )
    conn.execute(
        schema.tables.update()
        .where(schema.tables.c.id == root_id)
        .values(version=version - 1, schema_version=schema.tables.c.schema_version + 1)
    )
