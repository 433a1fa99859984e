"""In-memory descriptions of tables, views and columns, as loaded from the catalog."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.catalog import schema

ROWID = "_rowid"
BASE_ROWID = "_base_rowid"
V_MIN = "_v_min"
V_MAX = "_v_max"


class BuiltExpr:
    """An expression already built (a column about to be added); reads like a stored one: `.get()`."""

    def __init__(self, expr: Any) -> None:
        self.expr = expr

    def get(self) -> Any:
        return self.expr


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
        stem: the SQL column storing its values (fixed when the column is added; renames keep it).
        image_options: how its generated images are encoded (`{'format': 'webp', 'quality': 80}`;
            empty: the session's settings); kept in `computed_spec` under the key `image`.
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
    stem: str = ""
    id: int = 0

    @property
    def is_computed(self) -> bool:
        return self.computed_spec is not None

    @property
    def image_options(self) -> dict[str, Any]:
        return dict((self.computed_spec or {}).get("image") or {})

    @property
    def sql_name(self) -> str:
        return self.stem

    @property
    def error_names(self) -> tuple[str, str]:
        """The SQL columns of its error type and message (computed columns)."""
        return schema.error_columns(self.stem)

    def sql_columns(self) -> list[sa.Column[Any]]:
        """The SQL columns storing this column (value, plus error columns when computed)."""
        out: list[sa.Column[Any]] = [sa.Column(self.sql_name, self.col_type.sql_type(), nullable=True)]
        if self.is_computed:
            errortype, errormsg = self.error_names
            out += [
                sa.Column(errortype, sa.String(128), nullable=True),
                sa.Column(errormsg, sa.Text, nullable=True),
            ]
        return out


@dataclasses.dataclass(eq=False)
class TableMeta:
    """A table or view: identity, own columns, and (for views) its base and iterator.

    `at_version` is None for the current state; a number for a read-only description of an earlier
    version (:meth:`~mediatable.catalog.catalog.Catalog.get_table` with `version=`, or a snapshot).
    `stored` lists every SQL column the table's rows carry, including those of dropped or renamed
    columns that earlier versions still read.
    """

    id: int
    path: str
    kind: str
    own_columns: dict[str, Column]
    base: TableMeta | None = None
    iterator: dict[str, Any] | None = None
    schema_version: tuple[int, ...] = ()  # per owner table (see owner_ids), as loaded
    root_id: int = 0
    version: int = 0
    family_schema_version: int = 0  # the family's schema counter (see catalog.versions), as loaded
    created_version: int = 0
    at_version: int | None = None
    primary_key: list[str] = dataclasses.field(default_factory=list)
    media_validation: str = "on_read"
    stored: list[Column] = dataclasses.field(default_factory=list)

    @property
    def is_view(self) -> bool:
        return self.base is not None

    @property
    def read_only(self) -> bool:
        """True for an earlier version or a snapshot: rows and schema cannot change through it."""
        return self.at_version is not None

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

    def _stored_sql_columns(self) -> list[sa.Column[Any]]:
        seen: set[str] = set()
        out: list[sa.Column[Any]] = []
        for column in [*self.own_columns.values(), *self.stored]:
            for sql_column in column.sql_columns():
                if sql_column.name not in seen:
                    seen.add(sql_column.name)
                    out.append(sql_column)
        return out

    def sql_table(self) -> sa.Table:
        """The SQLAlchemy table storing this table's current rows."""
        cols: list[sa.Column[Any]] = [sa.Column(ROWID, sa.Integer, primary_key=True, autoincrement=True)]
        if self.base is not None:
            cols.append(sa.Column(BASE_ROWID, sa.Integer, nullable=False, index=True))
        cols.append(sa.Column(V_MIN, sa.Integer, nullable=False, server_default="0"))
        cols.extend(self._stored_sql_columns())
        return sa.Table(schema.data_table_name(self.id), sa.MetaData(), *cols)

    def history_table(self) -> sa.Table:
        """The SQLAlchemy table storing earlier images of changed and deleted rows."""
        cols: list[sa.Column[Any]] = [
            sa.Column("_hid", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column(ROWID, sa.Integer, nullable=False),
        ]
        if self.base is not None:
            cols.append(sa.Column(BASE_ROWID, sa.Integer, nullable=False))
        cols.append(sa.Column(V_MIN, sa.Integer, nullable=False))
        cols.append(sa.Column(V_MAX, sa.Integer, nullable=False, index=True))
        cols.extend(self._stored_sql_columns())
        return sa.Table(schema.history_table_name(self.id), sa.MetaData(), *cols)
