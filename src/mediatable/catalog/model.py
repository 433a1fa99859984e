"""In-memory descriptions of tables, views and columns, as loaded from the catalog."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.catalog import schema


@dataclasses.dataclass(eq=False)
class Column:
    """One column of a table or view.

    Attributes:
        name: the column's name.
        col_type: its :class:`~mediatable.types.ColumnType`.
        table_name: path of the table or view that owns it (for messages).
        owner_id: id of the table whose SQL table stores it (a view's base columns belong to the base).
        computed: the expression computing it, for computed columns (None for inserted columns).
        on_error: 'abort' or 'ignore' for computed columns.
        destination: where generated media of this column is written (None: `<home>/media`).
    """

    name: str
    col_type: ts.ColumnType
    table_name: str
    owner_id: int
    position: int
    computed: Any = None
    computed_spec: dict[str, Any] | None = None
    on_error: str | None = None
    destination: str | None = None
    iterator_output: bool = False

    @property
    def is_computed(self) -> bool:
        return self.computed_spec is not None

    @property
    def sql_name(self) -> str:
        return schema.value_column(self.name)

    def sql_columns(self) -> list[sa.Column[Any]]:
        """The SQL columns storing this column (value, plus error columns when computed)."""
        out: list[sa.Column[Any]] = [sa.Column(self.sql_name, self.col_type.sql_type(), nullable=True)]
        if self.is_computed:
            errortype, errormsg = schema.error_columns(self.name)
            out += [
                sa.Column(errortype, sa.String(128), nullable=True),
                sa.Column(errormsg, sa.Text, nullable=True),
            ]
        return out


@dataclasses.dataclass(eq=False)
class TableMeta:
    """A table or view: identity, own columns, and (for views) its base and iterator."""

    id: int
    path: str
    kind: str
    own_columns: dict[str, Column]
    base: TableMeta | None = None
    iterator: dict[str, Any] | None = None
    schema_version: tuple[int, ...] = ()  # per owner table (see owner_ids), as loaded

    @property
    def is_view(self) -> bool:
        return self.kind == "view"

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def columns(self) -> dict[str, Column]:
        """All columns visible in this table: a view's base columns first, then its own."""
        if self.base is None:
            return dict(self.own_columns)
        return {**self.base.columns, **self.own_columns}

    def owner_id_list(self) -> list[int]:
        """Ids of the tables whose columns are visible here, this one first."""
        return [self.id] + (self.base.owner_id_list() if self.base is not None else [])

    def owner_ids(self) -> set[int]:
        """Ids of the tables whose columns are visible here (itself and its bases)."""
        return {self.id} | (self.base.owner_ids() if self.base is not None else set())

    def sql_table(self) -> sa.Table:
        """The SQLAlchemy table storing this table's own rows."""
        cols: list[sa.Column[Any]] = [sa.Column("_rowid", sa.Integer, primary_key=True, autoincrement=True)]
        if self.base is not None:
            cols.append(sa.Column("_base_rowid", sa.Integer, nullable=False, index=True))
        for column in sorted(self.own_columns.values(), key=lambda c: c.position):
            cols.extend(column.sql_columns())
        return sa.Table(schema.data_table_name(self.id), sa.MetaData(), *cols)
