"""One open change of a table: the transaction, its version and the table's current description.

:meth:`~mediatable.catalog.catalog.Catalog.change` opens it (locking the table's family and taking
the next version); the column changes here run inside it, so a schema change and what goes with it
(values of a new computed column, rows inserted meanwhile) commit together or not at all.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mediatable.catalog import columns as columns_ops
from mediatable.catalog import indexes, schema
from mediatable.catalog.model import Column, TableMeta
from mediatable.catalog.schema import check_choice
from mediatable.errors import AlreadyExists, CatalogError, ColumnNotFound, DependencyError


class Change:
    """One open change (see :meth:`Catalog.change`): its connection, version and current `meta`."""

    def __init__(self, catalog: Any, conn: sa.Connection, version: int, meta: TableMeta) -> None:
        self.catalog = catalog
        self.conn = conn
        self.version = version
        self.meta = meta

    def reload(self) -> TableMeta:
        """The changed table's description as this change left it so far."""
        self.meta = self.catalog.get_table_by_id(self.meta.id, conn=self.conn)
        return self.meta

    def add_column(self, column: Column, if_exists: str = "error") -> Column:
        """Add `column` (retiring a column of that name with `if_exists='replace'`); returns it as stored."""
        schema.check_name(column.name, "column")
        check_choice("if_exists", if_exists, ("error", "replace"))
        meta = self.meta
        if column.name in meta.columns:
            if if_exists == "error" or column.name not in meta.own_columns:
                raise AlreadyExists(f"column {column.name!r} already exists in {meta.path!r}")
            self.drop_column(column.name, replacing=True)
            meta = self.reload()
        for view in self.catalog._family(self.conn, meta)[1:]:
            if column.name in view.own_columns:
                raise AlreadyExists(f"view {view.path!r} over {meta.path!r} already has a column {column.name!r}")
        position = max((c.position for c in meta.stored), default=-1) + 1
        column_id = columns_ops.insert_column_row(
            self.conn,
            meta.id,
            column.name,
            column.col_type,
            position,
            self.version,
            computed=column.computed_spec,
            on_error=column.on_error,
            destination=column.destination,
        )
        meta = self.reload()
        added = next(c for c in meta.stored if c.id == column_id)
        columns_ops.add_sql_columns(self.conn, meta, added)
        return meta.own_columns[column.name]

    def drop_column(self, name: str, replacing: bool = False) -> None:
        """Retire column `name` at this version (its stored values stay for earlier versions)."""
        meta = self.meta
        if name not in meta.own_columns:
            if name in meta.columns:
                raise CatalogError(f"column {name!r} belongs to the base table of view {meta.path!r}")
            raise ColumnNotFound(f"column {name!r} does not exist in {meta.path!r}")
        column = meta.own_columns[name]
        if column.iterator_output:
            raise DependencyError(f"column {name!r} is produced by the view's iterator and cannot be dropped")
        if name in meta.primary_key:
            raise DependencyError(f"column {name!r} is part of the primary key of {meta.path!r}")
        indexes.check_column_drop(self.conn, meta, column, "replace" if replacing else "drop")
        dependents = columns_ops.dependents(self.catalog._family(self.conn, meta), meta, name)
        if dependents:
            verb = "replace" if replacing else "drop"
            raise DependencyError(
                f"cannot {verb} column {name!r} of {meta.path!r}: computed columns depend on it "
                f"({', '.join(dependents)}); drop those first"
            )
        columns_ops.retire_column(self.conn, column, self.version)
