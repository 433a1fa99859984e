"""Moving and dropping catalog paths: tables, views, snapshots, and directories with everything in them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from mediatable.catalog import indexes, schema
from mediatable.catalog.model import TableMeta
from mediatable.errors import AlreadyExists, DependencyError, DirNotFound, InvalidArgument, TableNotFound


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


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


class PathOps:
    """Dropping and moving by path; mixed into :class:`~mediatable.catalog.catalog.Catalog`.

    Uses the catalog's lookups (`_dir_exists`, `_table_row`, `_load`, `_bump_schema_version`).
    """

    engine: Any
    on_drop: Callable[[list[int]], None] | None
    _dir_exists: Any
    _table_row: Any
    _load: Any
    _bump_schema_version: Any

    def _after_drop(self, table_ids: list[int]) -> None:
        """Tell `on_drop` (the session's media store) which tables are gone, once their drop committed."""
        if table_ids and self.on_drop is not None:
            self.on_drop(table_ids)

    def drop_dir(self, path: str, force: bool = False) -> None:
        """Drop a directory; refuses if it holds anything unless `force`, which drops its contents."""
        schema.check_path(path, "directory")
        with self.engine.begin() as conn:
            if not self._dir_exists(conn, path):
                raise DirNotFound(f"directory {path!r} does not exist")
            prefix = path + "."
            sub_dirs = conn.execute(sa.select(schema.dirs.c.path).where(schema.dirs.c.path.startswith(prefix)))
            sub_dirs = [r[0] for r in sub_dirs]
            contained = conn.execute(sa.select(schema.tables).where(schema.tables.c.path.startswith(prefix))).all()
            if (sub_dirs or contained) and not force:
                names = sorted([r.path for r in contained] + sub_dirs)
                raise DependencyError(
                    f"directory {path!r} is not empty ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); "
                    "use drop_dir(path, force=True) to drop it with everything in it"
                )
            inside = {r.id for r in contained}
            dependents = {d.id: d for r in contained for d in self._dependent_rows(conn, r.id)}
            outside = sorted(d.path for d in dependents.values() if d.id not in inside)
            if outside:
                raise DependencyError(f"views or snapshots outside {path!r} depend on its tables: {', '.join(outside)}")
            # snapshots first, then views (deepest first), then their bases
            by_id = {r.id: r for r in contained}

            def depth(row: Any) -> int:
                return 0 if row.base_id not in by_id else 1 + depth(by_id[row.base_id])

            dropped = []
            for row in sorted(contained, key=lambda r: (r.kind != "snapshot", -depth(r))):
                dropped += self._drop_table_rows(conn, row)
            conn.execute(schema.dirs.delete().where(schema.dirs.c.path.startswith(prefix)))
            conn.execute(schema.dirs.delete().where(schema.dirs.c.path == path))
        self._after_drop(dropped)

    def move(self, path: str, new_path: str) -> None:
        """Move (rename) a table, view, snapshot or directory; a directory takes everything in it along."""
        schema.check_path(path, "table")
        schema.check_path(new_path, "table")
        with self.engine.begin() as conn:
            is_dir = self._dir_exists(conn, path)
            if not is_dir and self._table_row(conn, path) is None:
                raise TableNotFound(f"no table, view or directory {path!r}")
            if self._table_row(conn, new_path) is not None or self._dir_exists(conn, new_path):
                raise AlreadyExists(f"{new_path!r} already exists")
            parent = _parent(new_path)
            if parent and not self._dir_exists(conn, parent):
                raise DirNotFound(f"directory {parent!r} does not exist; create it with mt.create_dir({parent!r})")
            if is_dir and (new_path + ".").startswith(path + "."):
                raise InvalidArgument(f"cannot move directory {path!r} into itself ({new_path!r})")
            for moved in move(conn, path, new_path, is_dir):
                self._bump_schema_version(conn, moved)  # handles take the new path

    def move_table(self, path: str, new_path: str, *, replace: bool = False) -> TableMeta:
        """Give the table at `path` the path `new_path`, in one transaction.

        Args:
            path: the table to move.
            new_path: its new path (the directory must exist).
            replace: drop what is at `new_path` first (with the views over it), in the same transaction.

        Returns:
            The table's description under its new path.

        Raises:
            TableNotFound: nothing is at `path`.
            AlreadyExists: `new_path` is taken and `replace` is False.

        Examples:
            >>> from mediatable import types as ts
            >>> from mediatable.catalog.catalog import Catalog, create_engine
            >>> cat = Catalog(create_engine("sqlite://"))
            >>> _ = cat.create_table("draft", {"n": ts.Int})
            >>> cat.move_table("draft", "final").path, cat.list_tables()
            ('final', ['final'])
        """
        schema.check_path(new_path, "table")
        with self.engine.begin() as conn:
            row = self._table_row(conn, path)
            if row is None:
                raise TableNotFound(f"table {path!r} does not exist")
            parent = _parent(new_path)
            if parent and not self._dir_exists(conn, parent):
                raise DirNotFound(f"directory {parent!r} does not exist")
            target = self._table_row(conn, new_path)
            dropped = []
            if target is not None or self._dir_exists(conn, new_path):
                if target is None or not replace:
                    raise AlreadyExists(f"table {new_path!r} already exists")
                dropped = self._drop_with_views(conn, target, force=True)
            conn.execute(schema.tables.update().where(schema.tables.c.id == row.id).values(path=new_path))
            self._bump_schema_version(conn, row.id)
            meta = self._load(conn, new_path)
        self._after_drop(dropped)
        return meta

    def _drop_with_views(self, conn: sa.Connection, row: Any, force: bool) -> list[int]:
        """Drop a table (or snapshot) with its views and snapshots; refuses while they exist unless `force`.

        Returns the ids of the tables and views dropped (see :meth:`_after_drop`).
        """
        if row.kind == "snapshot":
            conn.execute(schema.tables.delete().where(schema.tables.c.id == row.id))
            return []
        dependents = self._dependent_rows(conn, row.id)
        if dependents and not force:
            raise DependencyError(
                f"cannot drop {row.path!r}: views or snapshots depend on it "
                f"({', '.join(sorted(d.path for d in dependents))}); drop them first or pass force=True"
            )
        dropped = []
        for dependent in [*dependents, row]:
            dropped += self._drop_table_rows(conn, dependent)
        return dropped

    def _dependent_rows(self, conn: sa.Connection, table_id: int) -> list[Any]:
        """Rows of the views (at any depth) and snapshots that depend on table `table_id`, deepest first."""
        out: list[Any] = []
        frontier = [table_id]
        while frontier:
            rows = conn.execute(sa.select(schema.tables).where(schema.tables.c.base_id.in_(frontier))).all()
            out.extend(rows)
            frontier = [r.id for r in rows if r.kind != "snapshot"]
        return list(reversed(out))

    def _drop_table_rows(self, conn: sa.Connection, row: Any) -> list[int]:
        """Drop one table's, view's or snapshot's rows; returns [its id], or [] for a snapshot (whose media are
        its base's)."""
        preparer = conn.dialect.identifier_preparer
        if row.kind != "snapshot":
            indexes.drop_table_indexes(conn, row.id)
            for name in (schema.data_table_name(row.id), schema.history_table_name(row.id)):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {preparer.quote(name)}")
            conn.execute(schema.columns.delete().where(schema.columns.c.table_id == row.id))
        if row.base_id is None:
            conn.execute(schema.versions.delete().where(schema.versions.c.root_id == row.id))
        conn.execute(schema.tables.delete().where(schema.tables.c.id == row.id))
        return [] if row.kind == "snapshot" else [row.id]
