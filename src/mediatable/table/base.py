"""What every part of the :class:`~mediatable.table.Table` handle shares: the session, the table's
description, and column access as attributes (`t.image`, `t['image']`).

Lifecycle: a handle is cheap; it describes the table as of when it was obtained and reloads that
description after each of its own schema changes. Rows live in the database, so every process
sees every committed change. Writes are one transaction per operation: all or nothing.
"""

from __future__ import annotations

from typing import Any

from mediatable.catalog.model import TableMeta
from mediatable.errors import ColumnNotFound
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
        return list(self._meta.columns)

    def __getattr__(self, name: str) -> ColumnRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"use add_computed_column({name}=...) to add a column to {self.path!r}")

    def __getitem__(self, name: str) -> ColumnRef:
        column = self._meta.columns.get(name)
        if column is None:
            raise ColumnNotFound(
                f"column {name!r} does not exist in {self._meta.path!r} (columns: {', '.join(self.columns)})"
            )
        return ColumnRef(column)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.columns))

    def _set_meta(self, meta: TableMeta) -> None:
        object.__setattr__(self, "_meta", meta)

    def _query(self) -> Query:
        return Query(self._session, QuerySpec(self._meta))
