"""Schema operations of a table handle: `describe()` and `drop_column()`."""

from __future__ import annotations

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
        self._set_meta(self._session.catalog.drop_column(self._fresh(), name))
