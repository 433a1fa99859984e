"""Column changes inside one open change (a transaction holding the family's lock and a version).

A catalog column row lives from version `v_min` to `v_max` (None: still current). Adding a column
writes a row and its SQL columns (in the data and the history table); dropping sets `v_max` and
keeps the SQL columns for earlier versions; renaming retires the row and writes one with the new
name over the same SQL column, and rewrites the computed columns and views that read it the same way.
Reverting a version deletes the rows it wrote (dropping SQL columns no row uses any more) and
reopens the rows it retired.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.catalog import schema
from mediatable.catalog.model import Column, TableMeta
from mediatable.errors import AlreadyExists, CatalogError, ColumnNotFound


def insert_column_row(
    conn: sa.Connection,
    table_id: int,
    name: str,
    col_type: ts.ColumnType,
    position: int,
    version: int,
    *,
    computed: dict[str, Any] | None = None,
    on_error: str | None = None,
    destination: str | None = None,
    stem: str | None = None,
) -> int:
    """Record a column from `version` on; a new column gets its own SQL column name. Returns its id."""
    column_id = conn.execute(
        schema.columns.insert().values(
            table_id=table_id,
            name=name,
            position=position,
            col_type=col_type.to_dict(),
            computed=computed,
            on_error=on_error,
            destination=destination,
            stem=stem,
            v_min=version,
        )
    ).inserted_primary_key[0]
    if stem is None:
        conn.execute(
            schema.columns.update().where(schema.columns.c.id == column_id).values(stem=schema.column_stem(column_id))
        )
    return int(column_id)


def add_sql_columns(conn: sa.Connection, meta: TableMeta, column: Column) -> None:
    """ALTER the table's data and history tables to store `column`."""
    preparer = conn.dialect.identifier_preparer
    for table_name in (schema.data_table_name(meta.id), schema.history_table_name(meta.id)):
        for sql_column in column.sql_columns():
            col_sql = sa.schema.CreateColumn(sql_column).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {preparer.quote(table_name)} ADD COLUMN {col_sql}")


def retire_column(conn: sa.Connection, column: Column, version: int) -> None:
    """End a column's life at `version` (its SQL column stays for earlier versions)."""
    conn.execute(schema.columns.update().where(schema.columns.c.id == column.id).values(v_max=version))


def _reissue(conn: sa.Connection, column: Column, version: int, **changes: Any) -> None:
    """Retire `column` and record it anew from `version` with `changes`, over the same SQL column."""
    retire_column(conn, column, version)
    values = {
        "name": column.name,
        "col_type": column.col_type,
        "position": column.position,
        "computed": column.computed_spec,
        "on_error": column.on_error,
        "destination": column.destination,
        **changes,
    }
    insert_column_row(
        conn,
        column.owner_id,
        values["name"],
        values["col_type"],
        values["position"],
        version,
        computed=values["computed"],
        on_error=values["on_error"],
        destination=values["destination"],
        stem=column.stem,
    )


def rename_column(
    conn: sa.Connection, family: Sequence[TableMeta], meta: TableMeta, old: str, new: str, version: int
) -> None:
    """Rename `old` to `new` in `meta` (first of `family`); computed columns and views reading it follow."""
    if old not in meta.own_columns:
        if old in meta.columns:
            raise CatalogError(f"column {old!r} belongs to the base table of view {meta.path!r}: rename it there")
        raise ColumnNotFound(f"column {old!r} does not exist in {meta.path!r}")
    for member in family:
        if new in member.columns:
            raise AlreadyExists(f"column {new!r} already exists in {member.path!r}")
    column = meta.own_columns[old]
    if column.iterator_output:
        raise CatalogError(f"column {old!r} is produced by the view's iterator and cannot be renamed")
    _reissue(conn, column, version, name=new)
    for member in family:
        for other in member.own_columns.values():
            if other.computed_spec and old in referenced_names(other.computed_spec):
                _reissue(conn, other, version, computed=_renamed(other.computed_spec, old, new))
    undo: dict[str, Any] = {"renamed": [old, new], "iterators": [], "key": False}
    for member in family[1:]:
        if member.iterator and member.iterator.get("source") == old:
            conn.execute(
                schema.tables.update()
                .where(schema.tables.c.id == member.id)
                .values(iterator={**member.iterator, "source": new})
            )
            undo["iterators"].append(member.id)
    if old in meta.primary_key:
        key = [new if n == old else n for n in meta.primary_key]
        conn.execute(schema.tables.update().where(schema.tables.c.id == meta.id).values(primary_key=key))
        undo["key"] = meta.id
    conn.execute(
        schema.versions.update()
        .where(schema.versions.c.root_id == meta.root_id, schema.versions.c.version == version)
        .values(undo=undo)
    )


def revert_columns(conn: sa.Connection, family: Sequence[TableMeta], version: int, undo: dict[str, Any]) -> None:
    """Undo `version`'s column changes in every member of `family`."""
    ids = [m.id for m in family]
    added = conn.execute(
        sa.select(schema.columns).where(schema.columns.c.table_id.in_(ids), schema.columns.c.v_min == version)
    ).all()
    conn.execute(schema.columns.delete().where(schema.columns.c.table_id.in_(ids), schema.columns.c.v_min == version))
    conn.execute(
        schema.columns.update()
        .where(schema.columns.c.table_id.in_(ids), schema.columns.c.v_max == version)
        .values(v_max=None)
    )
    by_id = {m.id: m for m in family}
    for row in added:
        still_used = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.columns)
            .where(schema.columns.c.table_id == row.table_id, schema.columns.c.stem == row.stem)
        ).scalar_one()
        if not still_used:
            _drop_sql_columns(conn, by_id[row.table_id], row.stem, computed=row.computed is not None)
    if "renamed" in undo:
        old, new = undo["renamed"]
        for view_id in undo["iterators"]:
            view = by_id[view_id]
            conn.execute(
                schema.tables.update()
                .where(schema.tables.c.id == view_id)
                .values(iterator={**(view.iterator or {}), "source": old})
            )
        if undo["key"]:
            key = [old if n == new else n for n in by_id[undo["key"]].primary_key]
            conn.execute(schema.tables.update().where(schema.tables.c.id == undo["key"]).values(primary_key=key))


def _drop_sql_columns(conn: sa.Connection, meta: TableMeta, stem: str, computed: bool) -> None:
    preparer = conn.dialect.identifier_preparer
    names = [stem, *(schema.error_columns(stem) if computed else ())]
    for table_name in (schema.data_table_name(meta.id), schema.history_table_name(meta.id)):
        for name in names:
            conn.exec_driver_sql(f"ALTER TABLE {preparer.quote(table_name)} DROP COLUMN {preparer.quote(name)}")


def dependents(family: Sequence[TableMeta], meta: TableMeta, name: str) -> list[str]:
    """Names (`table.column`) of computed columns and views in `family` that read column `name` of `meta`."""
    out = []
    for table in family:
        if name not in table.columns or table.columns[name].owner_id != meta.columns[name].owner_id:
            continue
        for column in table.own_columns.values():
            if column.computed_spec and name in referenced_names(column.computed_spec):
                out.append(f"{table.path}.{column.name}")
        if table is not meta and table.iterator and table.iterator.get("source") == name:
            out.append(f"{table.path} (iterator)")
    return out


def referenced_names(spec: Any) -> set[str]:
    """The column names a stored expression reads."""
    if isinstance(spec, dict):
        found = {spec["name"]} if spec.get("k") == "col" else set()
        for value in spec.values():
            found |= referenced_names(value)
        return found
    if isinstance(spec, list):
        return set().union(*(referenced_names(v) for v in spec)) if spec else set()
    return set()


def _renamed(spec: Any, old: str, new: str) -> Any:
    if isinstance(spec, dict):
        if spec.get("k") == "col" and spec.get("name") == old:
            return {**spec, "name": new}
        return {k: _renamed(v, old, new) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_renamed(v, old, new) for v in spec]
    return spec
