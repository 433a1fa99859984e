"""The catalog: directories, tables, views and columns, persisted with SQLAlchemy.

Lifecycle: a :class:`Catalog` is built by `mt.init()` over one SQLAlchemy engine (SQLite file by
default, PostgreSQL via `db_url`); it creates its own tables on first use and is safe to share
between threads. Every change is one transaction, so another process sees all of it or nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mediatable import types as ts
from mediatable.catalog import columns as columns_ops
from mediatable.catalog import indexes, schema, versions
from mediatable.catalog.change import Change
from mediatable.catalog.engine import create_engine, read_only
from mediatable.catalog.model import Column, TableMeta
from mediatable.catalog.paths import PathOps
from mediatable.catalog.schema import check_choice
from mediatable.errors import (
    AlreadyExists,
    CatalogError,
    ColumnNotFound,
    DataError,
    DependencyError,
    DirNotFound,
    InvalidArgument,
    ReadOnlyTable,
    TableNotFound,
)
from mediatable.exprs import serialize

MEDIA_VALIDATION = ("on_read", "on_write")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


__all__ = ["Catalog", "Change", "check_choice", "create_engine", "read_only"]


class Catalog(PathOps):
    """Directories and tables of one mediatable database.

    Examples:
        >>> cat = Catalog(create_engine("sqlite://"))
        >>> cat.create_dir("demo")
        True
        >>> cat.list_dirs()
        ['demo']
    """

    def __init__(self, engine: Engine, on_drop: Callable[[list[int]], None] | None = None) -> None:
        self.engine = engine
        self.on_drop = on_drop  # told the ids of dropped tables and views, after the drop commits
        with engine.begin() as conn:
            existing = (
                sa.inspect(conn).get_columns(schema.tables.name) if sa.inspect(conn).has_table("mt_tables") else []
            )
            if existing and "root_id" not in {c["name"] for c in existing}:
                raise CatalogError(
                    "this catalog was written by an older mediatable without table versions; "
                    "export its tables and start a new catalog (a new home or db_url)"
                )
            schema.metadata.create_all(conn, checkfirst=True)
            indexes.metadata.create_all(conn, checkfirst=True)

    # -- directories --------------------------------------------------------------------------
    def create_dir(self, path: str, if_exists: str = "error", parents: bool = False) -> bool:
        """Create a directory; returns False if it existed and `if_exists='ignore'`."""
        schema.check_path(path, "directory")
        check_choice("if_exists", if_exists, ("error", "ignore"))
        with self.engine.begin() as conn:
            if self._dir_exists(conn, path):
                if if_exists == "ignore":
                    return False
                raise AlreadyExists(f"directory {path!r} already exists")
            if self._table_row(conn, path) is not None:
                raise AlreadyExists(f"{path!r} is already a table")
            parent = _parent(path)
            missing = []
            while parent and not self._dir_exists(conn, parent):
                missing.append(parent)
                parent = _parent(parent)
            if missing and not parents:
                raise DirNotFound(f"parent directory {missing[0]!r} does not exist (create it first)")
            for item in [*reversed(missing), path]:
                conn.execute(schema.dirs.insert().values(path=item, created_at=_now()))
        return True

    def list_dirs(self, parent: str | None = None) -> list[str]:
        """All directory paths, or those below `parent`, sorted."""
        with read_only(self.engine) as conn:
            rows = [r[0] for r in conn.execute(sa.select(schema.dirs.c.path).order_by(schema.dirs.c.path))]
        return [p for p in rows if parent is None or p.startswith(parent + ".")]

    def list_tables(self, dir: str | None = None) -> list[str]:
        """Paths of all tables and views, or those inside directory `dir` (recursively), sorted."""
        with read_only(self.engine) as conn:
            if dir is not None and dir and not self._dir_exists(conn, dir):
                raise DirNotFound(f"directory {dir!r} does not exist")
            rows = [r[0] for r in conn.execute(sa.select(schema.tables.c.path).order_by(schema.tables.c.path))]
        return [p for p in rows if not dir or p.startswith(dir + ".")]

    # -- tables -------------------------------------------------------------------------------
    def create_table(
        self,
        path: str,
        columns: Mapping[str, ts.ColumnType],
        *,
        base: TableMeta | None = None,
        iterator: dict[str, Any] | None = None,
        primary_key: Sequence[str] = (),
        media_validation: str = "on_read",
        populate: Callable[[sa.Connection, TableMeta], None] | None = None,
    ) -> TableMeta:
        """Create a table (or, with `base`, a view) and its SQL tables, in one transaction.

        A table starts a family at version 0; a view takes its base family's next version.
        `populate(conn, meta)`, if given, writes the first rows in that same transaction (a view's
        rows from its base), so a failure or a kill while it runs leaves nothing behind.
        """
        schema.check_path(path, "table")
        for name in columns:
            schema.check_name(name, "column")
        check_choice("media_validation", media_validation, MEDIA_VALIDATION)
        for name in primary_key:
            if name not in columns:
                raise InvalidArgument(f"primary key column {name!r} is not in the schema of {path!r}")
            if columns[name].is_media:
                raise InvalidArgument(f"primary key column {name!r} cannot be a media column")
        with self.engine.begin() as conn:
            self._check_free(conn, path)
            version = 0
            if base is not None:
                version = versions.begin_change(conn, base, "create_view", summary=f"created view {path}")
            table_id = conn.execute(
                schema.tables.insert().values(
                    path=path,
                    kind="view" if base is not None else "table",
                    base_id=base.id if base is not None else None,
                    iterator=iterator,
                    created_at=_now(),
                    root_id=base.root_id if base is not None else None,
                    created_version=version,
                    primary_key=list(primary_key) or None,
                    media_validation=media_validation,
                )
            ).inserted_primary_key[0]
            if base is None:
                conn.execute(schema.tables.update().where(schema.tables.c.id == table_id).values(root_id=table_id))
                conn.execute(
                    schema.versions.insert().values(
                        root_id=table_id, version=0, table_id=table_id, created_at=_now(), op="create", summary=""
                    )
                )
            else:
                conn.execute(
                    schema.versions.update()
                    .where(schema.versions.c.root_id == base.root_id, schema.versions.c.version == version)
                    .values(table_id=table_id)
                )
            for position, (name, col_type) in enumerate(columns.items()):
                columns_ops.insert_column_row(conn, table_id, name, col_type, position, version)
            self._bump_schema_version(conn, table_id)
            meta = self._load_id(conn, table_id)
            meta.sql_table().create(conn)
            meta.history_table().create(conn)
            if primary_key:
                data = meta.sql_table()
                sa.Index(
                    f"ux_{data.name}_key", *[data.c[meta.own_columns[n].sql_name] for n in primary_key], unique=True
                ).create(conn)
            if populate is not None:
                populate(conn, meta)
        return meta

    def get_table(self, path: str, version: int | None = None) -> TableMeta:
        """Load a table's or view's description: current, or as of `version` (read-only).

        A snapshot's path loads the version it froze.
        """
        with read_only(self.engine) as conn:
            row = self._table_row(conn, path)
            if row is None:
                raise TableNotFound(f"table {path!r} does not exist")
            if row.kind == "snapshot":
                if version is not None:
                    raise InvalidArgument(f"{path!r} is a snapshot: it has one version")
                meta = self._load_id(conn, row.base_id, at_version=row.created_version)
                meta.path = path
                return meta
            return self._load_row(conn, row, at_version=version)

    def get_table_by_id(self, table_id: int, conn: sa.Connection | None = None) -> TableMeta:
        """Load the current description of the table with id `table_id` (wherever it was moved)."""
        if conn is not None:
            return self._load_id(conn, table_id)
        with read_only(self.engine) as own:
            return self._load_id(own, table_id)

    @contextlib.contextmanager
    def change(
        self,
        meta: TableMeta,
        op: str,
        *,
        summary: str = "",
        schema_change: bool = False,
        expect_schema_version: int | None = None,
    ) -> Iterator[Change]:
        """One change of `meta` as one transaction with its own version (see :mod:`.versions`).

        The yielded :class:`Change` holds the connection, the new version and `meta` reloaded under
        the family's lock: the catalog's current schema, whatever handle started the change.

        A schema change is prepared against `meta`'s schema: if another process changed the family's
        schema while this one waited for the lock, it is refused (:class:`ConcurrentChange`), not
        applied to a schema its caller never saw.
        """
        if meta.read_only:
            raise ReadOnlyTable(f"{meta.path!r} is version {meta.at_version} of a table: it cannot change")
        if schema_change and expect_schema_version is None:
            expect_schema_version = meta.family_schema_version
        with self.engine.begin() as conn:
            version = versions.begin_change(
                conn,
                meta,
                op,
                summary=summary,
                schema_change=schema_change,
                expect_schema_version=expect_schema_version,
            )
            change = Change(self, conn, version, self._load_id(conn, meta.id))
            try:
                yield change
            except sa.exc.IntegrityError as exc:
                if not change.meta.primary_key:
                    raise
                key = ", ".join(change.meta.primary_key)
                raise DataError(
                    f"this {op.replace('_', ' ')} of {meta.path!r} would give two rows the same primary key "
                    f"({key}); nothing was changed"
                ) from exc
            if schema_change:
                self._bump_family(conn, meta.root_id)

    def create_snapshot(self, path: str, meta: TableMeta) -> TableMeta:
        """Freeze `meta`'s current version (or the version it reads) under a new path."""
        schema.check_path(path, "table")
        with self.engine.begin() as conn:
            self._check_free(conn, path)
            version = meta.at_version
            if version is None:
                version, _ = versions.lock_family(conn, meta.root_id)
            conn.execute(
                schema.tables.insert().values(
                    path=path,
                    kind="snapshot",
                    base_id=meta.id,
                    created_at=_now(),
                    root_id=meta.root_id,
                    created_version=version,
                )
            )
        return self.get_table(path)

    def drop_table(self, path: str, if_not_exists: str = "error", force: bool = False) -> None:
        """Drop a table or view and its rows; refuses while views or snapshots depend on it unless `force`."""
        check_choice("if_not_exists", if_not_exists, ("error", "ignore"))
        with self.engine.begin() as conn:
            row = self._table_row(conn, path)
            if row is None:
                if if_not_exists == "ignore":
                    return
                raise TableNotFound(f"table {path!r} does not exist")
            dropped = self._drop_with_views(conn, row, force)
        self._after_drop(dropped)

    # -- columns ------------------------------------------------------------------------------
    def add_column(self, meta: TableMeta, column: Column, if_exists: str = "error") -> TableMeta:
        """Add a column with no values (ALTER TABLE) as one version; returns the reloaded description."""
        return self.add_columns(meta, [column], if_exists=if_exists)

    def add_columns(self, meta: TableMeta, columns: Sequence[Column], if_exists: str = "error") -> TableMeta:
        """Add columns with no values, all in one version (see :meth:`add_column`)."""
        names = ", ".join(c.name for c in columns)
        with self.change(meta, "add_column", schema_change=True, summary=f"added {names}") as change:
            for column in columns:
                change.add_column(column, if_exists=if_exists)
            return change.reload()

    def drop_column(self, meta: TableMeta, name: str) -> TableMeta:
        """Drop a column as one version; refuses while computed columns (here or in views) depend on it.

        Its values stay stored for the earlier versions that read them.
        """
        with self.change(meta, "drop_column", schema_change=True, summary=f"dropped {name}") as change:
            change.drop_column(name)
            return change.reload()

    def rename_column(self, meta: TableMeta, old: str, new: str) -> TableMeta:
        """Rename a column as one version; computed columns and views reading it follow."""
        schema.check_name(new, "column")
        with self.change(meta, "rename_column", schema_change=True, summary=f"renamed {old} to {new}") as change:
            family = self._family(change.conn, change.meta)
            columns_ops.rename_column(change.conn, family, change.meta, old, new, change.version)
            return change.reload()

    def revert(self, meta: TableMeta) -> TableMeta:
        """Undo the family's last version, which must be a change of `meta`; returns the reloaded description."""
        if meta.read_only:
            raise ReadOnlyTable(f"{meta.path!r} is version {meta.at_version} of a table: it cannot change")
        with self.engine.begin() as conn:
            versions.lock_family(conn, meta.root_id)
            last = versions.last_version(conn, meta.root_id)
            current = self._load_id(conn, meta.id)
            if last.table_id != meta.id:
                other = conn.execute(sa.select(schema.tables.c.path).where(schema.tables.c.id == last.table_id))
                other_path = other.scalar_one_or_none() or "a dropped table"
                raise CatalogError(
                    f"the last change in the family of {meta.path!r} is version {last.version} ({last.op}) of "
                    f"{other_path!r}: revert it there first"
                )
            if last.op in ("create", "create_view"):
                raise CatalogError(f"version {last.version} of {meta.path!r} is its creation: drop it instead")
            snapshots = conn.execute(
                sa.select(schema.tables.c.path).where(
                    schema.tables.c.kind == "snapshot",
                    schema.tables.c.root_id == meta.root_id,
                    schema.tables.c.created_version >= last.version,
                )
            ).all()
            if snapshots:
                raise DependencyError(
                    f"cannot revert version {last.version} of {meta.path!r}: snapshots freeze it "
                    f"({', '.join(r.path for r in snapshots)}); drop them first"
                )
            family = self._family(conn, current)
            indexes.revert_vectors(conn, family, last.version)
            for member in family:
                versions.revert_rows(conn, member, last.version)
            columns_ops.revert_columns(conn, family, last.version, last.undo or {})
            versions.forget_version(conn, meta.root_id, last.version)
            self._bump_family(conn, meta.root_id)
            return self._load_id(conn, meta.id)

    def version_of(self, meta: TableMeta) -> int:
        """The current version of `meta`'s family (one small query)."""
        with read_only(self.engine) as conn:
            query = sa.select(schema.tables.c.version).where(schema.tables.c.id == meta.root_id)
            return int(conn.execute(query).scalar_one())

    def history(self, meta: TableMeta) -> list[dict[str, Any]]:
        """The versions that changed `meta`, newest first (see :func:`.versions.history`)."""
        with read_only(self.engine) as conn:
            return versions.history(conn, meta)

    def dependents(self, conn: sa.Connection, meta: TableMeta, name: str) -> list[str]:
        """Names (`table.column`) of computed columns and views that read column `name` of `meta`."""
        return columns_ops.dependents(self._family(conn, meta), meta, name)

    def view_paths(self, meta: TableMeta) -> list[str]:
        """Paths of the views built on `meta`."""
        with read_only(self.engine) as conn:
            return self._view_paths(conn, meta.id)

    def views(self, meta: TableMeta, conn: sa.Connection | None = None) -> list[TableMeta]:
        """Current descriptions of the views built directly on `meta`."""
        if conn is not None:
            return [self._load(conn, p) for p in self._view_paths(conn, meta.id)]
        with read_only(self.engine) as own:
            return [self._load(own, p) for p in self._view_paths(own, meta.id)]

    # -- internals ----------------------------------------------------------------------------
    def _family(self, conn: sa.Connection, meta: TableMeta) -> list[TableMeta]:
        """`meta` and every view over it (at any depth), current descriptions, `meta` first."""
        out = [meta]
        for member in out:
            out.extend(self._load(conn, p) for p in self._view_paths(conn, member.id))
        return out

    def _check_free(self, conn: sa.Connection, path: str) -> None:
        """Raise unless a new table can take `path`: its directory exists and nothing has that path."""
        parent = _parent(path)
        if parent and not self._dir_exists(conn, parent):
            raise DirNotFound(f"directory {parent!r} does not exist; create it with mt.create_dir({parent!r})")
        if self._table_row(conn, path) is not None or self._dir_exists(conn, path):
            raise AlreadyExists(f"table {path!r} already exists")

    def _view_paths(self, conn: sa.Connection, table_id: int) -> list[str]:
        rows = conn.execute(
            sa.select(schema.tables.c.path).where(schema.tables.c.base_id == table_id, schema.tables.c.kind == "view")
        )
        return sorted(r[0] for r in rows)

    def _dir_exists(self, conn: sa.Connection, path: str) -> bool:
        return conn.execute(sa.select(schema.dirs.c.path).where(schema.dirs.c.path == path)).first() is not None

    def _table_row(self, conn: sa.Connection, path: str) -> Any:
        return conn.execute(sa.select(schema.tables).where(schema.tables.c.path == path)).first()

    def _load(self, conn: sa.Connection, path: str) -> TableMeta:
        row = self._table_row(conn, path)
        if row is None:
            raise TableNotFound(f"table {path!r} does not exist")
        return self._load_row(conn, row)

    def _load_id(self, conn: sa.Connection, table_id: int, at_version: int | None = None) -> TableMeta:
        row = conn.execute(sa.select(schema.tables).where(schema.tables.c.id == table_id)).first()
        if row is None:
            raise TableNotFound(f"table {table_id} does not exist (dropped by another process?)")
        return self._load_row(conn, row, at_version=at_version)

    def _load_row(self, conn: sa.Connection, row: Any, at_version: int | None = None) -> TableMeta:
        root = conn.execute(
            sa.select(schema.tables.c.version, schema.tables.c.schema_version).where(schema.tables.c.id == row.root_id)
        ).one()
        if at_version is not None:
            if isinstance(at_version, bool) or not isinstance(at_version, int):
                raise InvalidArgument(f"a version is an int, not {at_version!r}")
            if not row.created_version <= at_version <= root.version:
                raise InvalidArgument(
                    f"{row.path!r} has versions {row.created_version} to {root.version}, not {at_version}"
                )
        base = None
        if row.base_id is not None:
            base_row = conn.execute(sa.select(schema.tables).where(schema.tables.c.id == row.base_id)).first()
            base = self._load_row(conn, base_row, at_version=at_version)
        column_rows = conn.execute(
            sa.select(schema.columns)
            .where(schema.columns.c.table_id == row.id)
            .order_by(schema.columns.c.position, schema.columns.c.id)
        ).all()
        iterator_outputs = set((row.iterator or {}).get("outputs", []))
        visible_at = root.version if at_version is None else at_version
        own: dict[str, Column] = {}
        stored: list[Column] = []
        for c in column_rows:
            column = Column(
                name=c.name,
                col_type=ts.type_from_dict(c.col_type),
                table_name=row.path,
                owner_id=row.id,
                position=c.position,
                computed_spec=c.computed,
                on_error=c.on_error,
                destination=c.destination,
                iterator_output=c.name in iterator_outputs,
                stem=c.stem,
                id=c.id,
            )
            stored.append(column)
            if c.v_min <= visible_at and (c.v_max is None or c.v_max > visible_at):
                own[c.name] = column
        meta = TableMeta(
            id=row.id,
            path=row.path,
            kind=row.kind,
            own_columns=own,
            base=base,
            iterator=row.iterator,
            root_id=row.root_id,
            version=root.version,
            created_version=row.created_version,
            at_version=at_version,
            primary_key=list(row.primary_key or []),
            media_validation=row.media_validation,
            stored=stored,
            family_schema_version=root.schema_version,
        )
        meta.schema_version = self._schema_version(conn, meta.owner_id_list())
        visible = meta.columns
        for column in own.values():
            if column.computed_spec is not None:
                column.computed = LazyExpr(column.computed_spec, visible)
        return meta

    def schema_version(self, meta: TableMeta) -> tuple[int, ...]:
        """The current schema version of `meta`'s table and its bases: one cheap query.

        A handle whose `meta.schema_version` differs is out of date (another handle or process
        added or dropped a column) and reloads its description.
        """
        with read_only(self.engine) as conn:
            return self._schema_version(conn, meta.owner_id_list())

    def _schema_version(self, conn: sa.Connection, table_ids: list[int]) -> tuple[int, ...]:
        """Versions of the tables `table_ids`: -1 for a table that no longer exists."""
        tables, versions = schema.tables, schema.schema_versions
        rows = conn.execute(
            sa.select(tables.c.id, versions.c.version)
            .select_from(tables.outerjoin(versions, versions.c.table_id == tables.c.id))
            .where(tables.c.id.in_(table_ids))
        )
        found = {table_id: version or 0 for table_id, version in rows}
        return tuple(found.get(i, -1) for i in table_ids)

    def _bump_family(self, conn: sa.Connection, root_id: int) -> None:
        """After a schema change in a family, handles of every member reload (the family's schema moved on)."""
        for member in self._family(conn, self._load_id(conn, root_id)):
            self._bump_schema_version(conn, member.id)

    def _bump_schema_version(self, conn: sa.Connection, table_id: int) -> None:
        """Stamp `table_id` with a version above every version handed out so far (ids can be reused)."""
        versions = schema.schema_versions
        stamp = conn.execute(sa.select(sa.func.coalesce(sa.func.max(versions.c.version), 0) + 1)).scalar_one()
        changed = conn.execute(versions.update().where(versions.c.table_id == table_id).values(version=stamp))
        if changed.rowcount == 0:
            conn.execute(versions.insert().values(table_id=table_id, version=stamp))


class LazyExpr:
    """A stored expression, rebuilt on first use (so loading a table never imports user code eagerly)."""

    def __init__(self, spec: dict[str, Any], columns: Mapping[str, Column]) -> None:
        self.spec = spec
        self.columns = columns
        self._expr: Any = None

    def get(self) -> Any:
        if self._expr is None:
            self._expr = serialize.from_dict(self.spec, self._resolve)
        return self._expr

    def _resolve(self, name: str) -> Column:
        if name not in self.columns:
            raise ColumnNotFound(f"stored expression refers to missing column {name!r}")
        return self.columns[name]
