"""Schema operations of a table handle: `describe()`, `add_column(s)`, `rename_column()`, `drop_column()`.

Each change is one transaction and one new version, made under the table family's lock against
the catalog's current schema (see :mod:`mediatable.catalog.versions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mediatable import types as ts
from mediatable.catalog.catalog import check_choice
from mediatable.catalog.model import Column
from mediatable.errors import InvalidArgument
from mediatable.table.base import TableBase


class SchemaOps(TableBase):
    """Schema inspection and changes of a :class:`~mediatable.table.Table`."""

    def describe(self) -> None:
        """Print the schema: one line per column with its type and, for computed ones, its expression.

        `repr(t)` is the same text.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'name': mt.String, 'age': mt.Int})
            Created table 'pets'.
            >>> t.describe()
            table 'pets'
              name    String
              age     Int
        """
        print(self._schema_text())

    def _schema_text(self) -> str:
        kind = "view" if self._fresh().is_view else "table"
        lines = [f"{kind} {self._meta.path!r}"]
        if self._meta.is_view and self._meta.base is not None:
            lines[0] += f" over {self._meta.base.path!r}"
        width = max([len(n) for n in self.columns] + [6])
        for name, column in self._meta.columns.items():
            line = f"  {name.ljust(width)}  {column.col_type!r}"
            if column.is_computed:
                line += f"  = {column.computed.get()!r}"
            lines.append(line)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self._schema_text()

    def add_column(self, *, if_exists: str = "error", **column: Any) -> None:
        """Add one stored column (no values: None in every row until set by `update` or `insert`).

        Args:
            if_exists: 'error' or 'ignore' when a column of that name exists.
            **column: `name=type`, e.g. `add_column(notes=mt.String)`.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'name': mt.String})
            Created table 'pets'.
            >>> t.add_column(age=mt.Int)
            >>> t.columns
            ['name', 'age']
        """
        if len(column) != 1:
            raise InvalidArgument("add_column() takes one name=type; use add_columns({...}) for several")
        self.add_columns(column, if_exists=if_exists)

    def add_columns(self, columns: Mapping[str, Any], *, if_exists: str = "error") -> None:
        """Add stored columns (see :meth:`add_column`), all in one change.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'name': mt.String})
            Created table 'pets'.
            >>> t.add_columns({'age': mt.Int, 'photo': mt.Image})
            >>> t.columns
            ['name', 'age', 'photo']
        """
        check_choice("if_exists", if_exists, ("error", "ignore"))
        self._check_writable()
        self._refresh()
        if not columns:
            raise InvalidArgument("add_columns() needs a dict of name -> type")
        self._check_new_column_names(columns)
        new = [
            Column(
                name=name, col_type=ts.as_column_type(kind), table_name=self.path, owner_id=self._meta.id, position=0
            )
            for name, kind in columns.items()
            if not (if_exists == "ignore" and name in self._meta.columns)
        ]
        if new:
            self._set_meta(self._session.catalog.add_columns(self._meta, new))

    def rename_column(self, old: str, new: str) -> None:
        """Rename a column; computed columns and views that read it keep working.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'n': mt.Int})
            Created table 'pets'.
            >>> _ = t.add_computed_column(double=t.n * 2, quiet=True)
            >>> t.rename_column('n', 'total')
            >>> t.describe()
            table 'pets'
              total   Int
              double  Int  = (pets.total * 2)
        """
        self._check_writable()
        self._check_new_column_names([new])
        self._set_meta(self._session.catalog.rename_column(self._current_meta(), old, new))

    def drop_column(self, name: str) -> None:
        """Drop a column; refuses while computed columns or views depend on it.

        Examples:
            >>> import mediatable as mt, tempfile
            >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
            >>> t = mt.create_table('pets', {'name': mt.String, 'age': mt.Int})
            Created table 'pets'.
            >>> t.drop_column('age')
            >>> t.columns
            ['name']
        """
        self._check_writable()
        self._set_meta(self._session.catalog.drop_column(self._current_meta(), name))
