"""What every part of the :class:`~mediatable.table.Table` handle shares: the session, the table's
description, and column access as attributes (`t.image`, `t['image']`).

Lifecycle: a handle is cheap. It keeps the table's description and, before each operation, checks
with one small query whether the catalog's schema version of the table changed (another handle or
process added or dropped a column); if so it reloads the description. Rows live in the database, so
every process sees every committed change. Writes are one transaction per operation: all or nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from mediatable.catalog.model import TableMeta
from mediatable.errors import ColumnNotFound, InvalidName, ReadOnlyTable, TableNotFound
from mediatable.exec.query import QuerySpec
from mediatable.exprs import ColumnRef
from mediatable.session import Session
from mediatable.table.query import Query

ON_ERROR = ("abort", "ignore")


class TableBase:
    """The state of a table handle and column access; the concerns are mixed in by :class:`Table`."""

    _session: Session
    _meta: TableMeta

    def __init__(self, session: Session, meta: TableMeta) -> None:
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_meta", meta)

    @property
    def path(self) -> str:
        """The table's catalog path (`dir.name`)."""
        return self._meta.path

    @property
    def columns(self) -> list[str]:
        """Column names in order (for views: base columns, iterator outputs, own computed columns)."""
        return list(self._fresh().columns)

    def __getattr__(self, name: str) -> ColumnRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"use add_computed_column({name}=...) to add a column to {self.path!r}")

    def __getitem__(self, name: str) -> ColumnRef:
        column = self._meta.columns.get(name)
        if column is None:
            column = self._fresh().columns.get(name)
        if column is None:
            methods = [n for n in dir(type(self)) if not n.startswith("_")]
            close = difflib.get_close_matches(name, [*methods, *self._meta.columns], n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise ColumnNotFound(
                f"{self._meta.path!r} has no column or method {name!r} ({hint}columns: {', '.join(self._meta.columns)})"
            )
        return ColumnRef(column)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._meta.columns))

    def _set_meta(self, meta: TableMeta) -> None:
        object.__setattr__(self, "_meta", meta)

    def _fresh(self) -> TableMeta:
        """The table's description, reloaded first if the catalog's schema version moved on.

        A handle follows its table (by id, so through moves); once the table is gone it follows its
        path: after `if_exists='replace'` it describes the new table. Read-only handles keep theirs.
        """
        if self._meta.read_only:
            return self._meta
        catalog = self._session.catalog
        if catalog.schema_version(self._meta) != self._meta.schema_version:
            try:
                meta = catalog.get_table_by_id(self._meta.id)
            except TableNotFound:
                meta = catalog.get_table(self._meta.path)  # TableNotFound if it was dropped
            self._set_meta(meta)
        return self._meta

    def _current_meta(self) -> TableMeta:
        """The catalog's current description of this table (a read-only handle keeps its own)."""
        return self._fresh()

    def _refresh(self) -> None:
        """Take the catalog's current description (after a change, or before one)."""
        self._fresh()

    def _check_writable(self) -> None:
        if self._meta.read_only:
            raise ReadOnlyTable(
                f"{self.path!r} reads version {self._meta.at_version} of a table: it cannot be changed "
                "(use the table itself, or revert it)"
            )

    def _query(self) -> Query:
        return Query(self._session, QuerySpec(self._fresh()))

    def _check_new_column_names(self, names: Iterable[str]) -> None:
        check_column_names(type(self), names)


def check_column_names(handle: type, names: Iterable[str]) -> None:
    """Refuse column names that would hide a method or property of the handle (`count`, `path`, ...).

    Raises:
        InvalidName: names the clashing column and says what it would hide.
    """
    taken = {n for n in dir(handle) if not n.startswith("_")}
    clashes = [n for n in names if n in taken]
    if clashes:
        raise InvalidName(
            f"column name {clashes[0]!r} is taken by the table method or property of that name "
            f"(t.{clashes[0]} must keep working); choose another name, e.g. {clashes[0] + '_'!r}"
        )
