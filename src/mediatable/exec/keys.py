"""Primary keys: finding the stored rows that rows about to be written name, and what `on_conflict` does.

A table created with `primary_key=[...]` has a unique index over those columns, so the database
itself refuses a second row with a key; these functions turn that into the documented choices
('error', 'ignore', 'update') with messages naming the row and the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from mediatable.catalog.model import TableMeta
from mediatable.errors import DataError, InvalidArgument
from mediatable.exec.rows import ROWID, TableSql

ON_CONFLICT = ("error", "ignore", "update")
Key = tuple[Any, ...]


def key_of(meta: TableMeta, row: dict[str, Any], index: int) -> Key:
    """The primary-key values of `row` (input row number `index`). Raises DataError if one is missing."""
    values = []
    for name in meta.primary_key:
        value = row.get(name)
        if value is None:
            raise DataError(f"row {index}: primary key column {name!r} of {meta.path!r} has no value", row=index)
        values.append(value)
    return tuple(values)


def stored_rowids(conn: sa.Connection, meta: TableMeta, keys: Sequence[Key]) -> dict[Key, int]:
    """`_rowid` of each stored row whose key is in `keys`."""
    sql = TableSql(meta)
    columns = [meta.own_columns[n] for n in meta.primary_key]
    sql_columns = [sql.table.c[c.sql_name] for c in columns]
    found: dict[Key, int] = {}
    for start in range(0, len(keys), 500):
        chunk = [
            tuple(c.col_type.to_sql(v) for c, v in zip(columns, key, strict=True)) for key in keys[start : start + 500]
        ]
        condition = (
            sa.tuple_(*sql_columns).in_(chunk) if len(sql_columns) > 1 else sql_columns[0].in_([k[0] for k in chunk])
        )
        for record in conn.execute(sa.select(sql.table.c[ROWID], *sql_columns).where(condition)):
            stored = tuple(c.col_type.from_sql(v) for c, v in zip(columns, record[1:], strict=True))
            found[stored] = record[0]
    return found


def split(
    conn: sa.Connection, meta: TableMeta, rows: list[dict[str, Any]], on_conflict: str, first_index: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Rows to insert, rows to update (with their `_rowid`), and how many were skipped.

    Raises:
        DataError: with `on_conflict='error'`, a key that is stored already or repeated in `rows`.
    """
    if not meta.primary_key:
        if on_conflict != "error":
            raise InvalidArgument(
                f"on_conflict={on_conflict!r} needs a table with a primary key; {meta.path!r} has none"
            )
        return rows, [], 0
    keyed: dict[Key, tuple[int, dict[str, Any]]] = {}
    skipped = 0
    for index, row in enumerate(rows, start=first_index):
        key = key_of(meta, row, index)
        if key in keyed:
            if on_conflict == "error":
                raise DataError(
                    f"row {index}: key {show_key(key)} repeats row {keyed[key][0]} of this insert", row=index
                )
            if on_conflict == "ignore":
                skipped += 1
                continue
            keyed[key][1].update(row)
            continue
        keyed[key] = (index, row)
    stored = stored_rowids(conn, meta, list(keyed))
    to_insert, to_update = [], []
    for key, (index, row) in keyed.items():
        rowid = stored.get(key)
        if rowid is None:
            to_insert.append(row)
        elif on_conflict == "error":
            raise DataError(
                f"row {index}: key {show_key(key)} already exists in {meta.path!r} "
                "(pass on_conflict='ignore' to skip such rows or 'update' to update them)",
                row=index,
            )
        elif on_conflict == "ignore":
            skipped += 1
        else:
            to_update.append({**row, ROWID: rowid})
    return to_insert, to_update, skipped


def show_key(key: Key) -> str:
    """A key as messages show it: `9`, or `('go', 1)` for a composite key."""
    return repr(key[0]) if len(key) == 1 else repr(key)
