"""Moving catalog paths: a table, view or snapshot, or a directory with everything in it."""

from __future__ import annotations

import sqlalchemy as sa

from mediatable.catalog import schema


def move(conn: sa.Connection, path: str, new_path: str, is_dir: bool) -> list[int]:
    """Rename `path` (and, for a directory, every path below it) to `new_path`; returns the moved tables' ids.

    The caller has checked that `path` exists and `new_path` is free.
    """
    renames = [(path, new_path)]
    if is_dir:
        prefix = path + "."
        inside = conn.execute(sa.select(schema.tables.c.path).where(schema.tables.c.path.startswith(prefix)))
        renames += [(p, new_path + p[len(path) :]) for (p,) in inside]
        sub = conn.execute(sa.select(schema.dirs.c.path).where(schema.dirs.c.path.startswith(prefix)))
        sub_dirs = [(p, new_path + p[len(path) :]) for (p,) in sub]
        for old, new in [(path, new_path), *sub_dirs]:
            schema.check_path(new, "directory")
            conn.execute(schema.dirs.update().where(schema.dirs.c.path == old).values(path=new))
        renames = renames[1:]
    moved = []
    for old, new in renames:
        schema.check_path(new, "table")
        conn.execute(schema.tables.update().where(schema.tables.c.path == old).values(path=new))
        moved.append(conn.execute(sa.select(schema.tables.c.id).where(schema.tables.c.path == new)).scalar_one())
    return moved
