"""`t.alias('p')`: another name for a table in a join, so that a table can be joined with itself."""

from __future__ import annotations

import re
from typing import Any

from mediatable.catalog.model import TableMeta
from mediatable.errors import InvalidName
from mediatable.exprs import ColumnRef

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class TableAlias:
    """A table under another name, as the right side of a join; its columns are read as `alias.col`.

    Every public attribute is a column (`p.id`, `p['id']`), as on a table handle.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> staff = mt.create_table('staff', {'id': mt.Int, 'name': mt.String, 'boss': mt.Int})
        Created table 'staff'.
        >>> _ = staff.insert([{'id': 1, 'name': 'Ada', 'boss': None}, {'id': 2, 'name': 'Bob', 'boss': 1}], quiet=True)
        >>> boss = staff.alias('boss_of')
        >>> list(staff.join(boss, on=staff.boss == boss.id).select(staff.name, chief=boss.name).collect())
        [{'name': 'Bob', 'chief': 'Ada'}]
    """

    def __init__(self, table: Any, name: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidName(f"an alias is a name of letters, digits and _ (not starting with a digit), not {name!r}")
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_alias", name)

    def __repr__(self) -> str:
        return f"{self._table.path!r} as {self._alias!r}"

    def __getattr__(self, name: str) -> ColumnRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> ColumnRef:
        return ColumnRef(self._table[name].column, self._alias)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"an alias of {self._table.path!r} is read-only")

    def _fresh(self) -> TableMeta:
        return self._table._fresh()
