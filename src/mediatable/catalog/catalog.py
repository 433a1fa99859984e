"""The catalog: directories, tables, views and columns, persisted with SQLAlchemy.

Lifecycle: a :class:`Catalog` is built by `mt.init()` over one SQLAlchemy engine (SQLite file by
default, PostgreSQL via `db_url`); it creates its own tables on first use and is safe to share
between threads. Every change is one transaction, so another process sees all of it or nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mediatable import types as ts
from mediatable.catalog import schema
from mediatable.catalog.model import Column, TableMeta
from mediatable.errors import (
    AlreadyExists,
    CatalogError,
    ColumnNotFound,
    DependencyError,
    DirNotFound,
    InvalidArgument,
    TableNotFound,
)
from mediatable.exprs import serialize

READ_ONLY = "mediatable_read_only"


def read_only(engine: Engine) -> sa.Connection:
    """A connection for reading only: on SQLite it never takes the write lock.

    Examples:
        >>> with read_only(create_engine("sqlite://")) as conn:
        ...     conn.execute(sa.text("select 1")).scalar_one()
        1
    """
    return engine.connect().execution_options(**{READ_ONLY: True})


def create_engine(url: str) -> Engine:
    """An engine for the catalog URL, tuned for concurrent use by several processes.

    SQLite gets WAL and a busy timeout, so concurrent writers wait instead of failing.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()
            # Python's case mapping (SQLite's own lower/upper only know ASCII): filters pushed down to
            # SQL give exactly what the same expression gives in Python.
            dbapi_conn.create_function("lower", 1, _python_str(str.lower), deterministic=True)
            dbapi_conn.create_function("upper", 1, _python_str(str.upper), deterministic=True)

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn: Any) -> None:
            # Take the write lock at BEGIN: avoids deadlock-style SQLITE_BUSY on read->write upgrades.
            # A connection marked read-only (see `read_only`) begins deferred: in WAL mode it reads a
            # snapshot and never blocks writers, so a query can stream while its consumer writes.
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return sa.create_engine(url, pool_pre_ping=True)


def _python_str(method: Callable[[str], str]) -> Callable[[Any], Any]:
    return lambda value: method(value) if isinstance(value, str) else value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


class Catalog:
    """Directories and tables of one mediatable database.

    Examples:
        >>> cat = Catalog(create_engine("sqlite://"))
        >>> cat.create_dir("demo")
        True
        >>> cat.list_dirs()
        ['demo']
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with engine.begin() as conn:
            schema.metadata.create_all(conn, checkfirst=True)

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

    def drop_dir(self, path: str, force: bool = False) -> None:
        """Drop a directory; refuses if it holds anything unless `force`, which drops its contents."""
        schema.check_path(path, "directory")
        with self.engine.begin() as conn:
            if not self._dir_exists(conn, path):
                raise DirNotFound(f"directory {path!r} does not exist")
            prefix = path + "."
            sub_dirs = conn.execute(sa.select(schema.dirs.c.path).where(schema.dirs.c.path.startswith(prefix)))
            sub_dirs = [r[0] for r in sub_dirs]
            contained = conn.execute(
                sa.select(schema.tables.c.id, schema.tables.c.path, schema.tables.c.base_id).where(
                    schema.tables.c.path.startswith(prefix)
                )
            ).all()
            if (sub_dirs or contained) and not force:
                names = sorted([r.path for r in contained] + sub_dirs)
                raise DependencyError(
                    f"directory {path!r} is not empty ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); "
                    "use drop_dir(path, force=True) to drop it with everything in it"
                )
            ids = {r.id for r in contained}
            outside_views = conn.execute(
                sa.select(schema.tables.c.path).where(
                    schema.tables.c.base_id.in_(ids), ~schema.tables.c.path.startswith(prefix)
                )
            ).all()
            if outside_views:
                raise DependencyError(
                    f"views outside {path!r} depend on its tables: {', '.join(r[0] for r in outside_views)}"
                )
            # views first, then their bases
            for row in sorted(contained, key=lambda r: r.base_id is None):
                self._drop_table_rows(conn, row.id)
            conn.execute(schema.dirs.delete().where(schema.dirs.c.path.startswith(prefix)))
            conn.execute(schema.dirs.delete().where(schema.dirs.c.path == path))

    def list_dirs(self, parent: str | None = None) -> list[str]:
        """All directory paths, or those below `parent`, sorted."""
        with self.engine.connect() as conn:
            rows = [r[0] for r in conn.execute(sa.select(schema.dirs.c.path).order_by(schema.dirs.c.path))]
        return [p for p in rows if parent is None or p.startswith(parent + ".")]

    def list_tables(self, dir: str | None = None) -> list[str]:
        """Paths of all tables and views, or those inside directory `dir` (recursively), sorted."""
        with self.engine.connect() as conn:
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
    ) -> TableMeta:
        """Create a table (or, with `base`, a view) and its SQL table, in one transaction."""
        schema.check_path(path, "table")
        for name in columns:
            schema.check_name(name, "column")
        with self.engine.begin() as conn:
            parent = _parent(path)
            if parent and not self._dir_exists(conn, parent):
                raise DirNotFound(f"directory {parent!r} does not exist; create it with mt.create_dir({parent!r})")
            if self._table_row(conn, path) is not None or self._dir_exists(conn, path):
                raise AlreadyExists(f"table {path!r} already exists")
            table_id = conn.execute(
                schema.tables.insert().values(
                    path=path,
                    kind="view" if base is not None else "table",
                    base_id=base.id if base is not None else None,
                    iterator=iterator,
                    created_at=_now(),
                )
            ).inserted_primary_key[0]
            for position, (name, col_type) in enumerate(columns.items()):
                conn.execute(
                    schema.columns.insert().values(
                        table_id=table_id, name=name, position=position, col_type=col_type.to_dict()
                    )
                )
            self._bump_schema_version(conn, table_id)
            meta = self._load(conn, path)
            meta.sql_table().create(conn)
        return meta

    def get_table(self, path: str) -> TableMeta:
        """Load a table's or view's description."""
        with self.engine.connect() as conn:
            return self._load(conn, path)

    def drop_table(self, path: str, if_not_exists: str = "error", force: bool = False) -> None:
        """Drop a table or view and its rows; refuses while views depend on it unless `force`."""
        check_choice("if_not_exists", if_not_exists, ("error", "ignore"))
        with self.engine.begin() as conn:
            row = self._table_row(conn, path)
            if row is None:
                if if_not_exists == "ignore":
                    return
                raise TableNotFound(f"table {path!r} does not exist")
            self._drop_with_views(conn, row, force)

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
            if target is not None or self._dir_exists(conn, new_path):
                if target is None or not replace:
                    raise AlreadyExists(f"table {new_path!r} already exists")
                self._drop_with_views(conn, target, force=True)
            conn.execute(schema.tables.update().where(schema.tables.c.id == row.id).values(path=new_path))
            self._bump_schema_version(conn, row.id)
            return self._load(conn, new_path)

    def _drop_with_views(self, conn: sa.Connection, row: Any, force: bool) -> None:
        views = conn.execute(
            sa.select(schema.tables.c.id, schema.tables.c.path).where(schema.tables.c.base_id == row.id)
        ).all()
        if views and not force:
            raise DependencyError(
                f"cannot drop {row.path!r}: views depend on it ({', '.join(v.path for v in views)}); "
                "drop them first or pass force=True"
            )
        for view in views:
            self._drop_table_rows(conn, view.id)
        self._drop_table_rows(conn, row.id)

    # -- columns ------------------------------------------------------------------------------
    def add_column(self, meta: TableMeta, column: Column, if_exists: str = "error") -> TableMeta:
        """Add a column to a table (ALTER TABLE) and record it; returns the reloaded description."""
        schema.check_name(column.name, "column")
        with self.engine.begin() as conn:
            current = self._load(conn, meta.path)
            if column.name in current.columns:
                if if_exists == "error":
                    raise AlreadyExists(f"column {column.name!r} already exists in {meta.path!r}")
                self._drop_column(conn, current, column.name)
                current = self._load(conn, meta.path)
            position = max((c.position for c in current.own_columns.values()), default=-1) + 1
            conn.execute(
                schema.columns.insert().values(
                    table_id=meta.id,
                    name=column.name,
                    position=position,
                    col_type=column.col_type.to_dict(),
                    computed=column.computed_spec,
                    on_error=column.on_error,
                    destination=column.destination,
                )
            )
            table_name = schema.data_table_name(meta.id)
            preparer = conn.dialect.identifier_preparer
            for sql_column in column.sql_columns():
                col_sql = sa.schema.CreateColumn(sql_column).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {preparer.quote(table_name)} ADD COLUMN {col_sql}")
            self._bump_schema_version(conn, meta.id)
            return self._load(conn, meta.path)

    def drop_column(self, meta: TableMeta, name: str) -> TableMeta:
        """Drop a column; refuses while computed columns (here or in views) depend on it."""
        with self.engine.begin() as conn:
            current = self._load(conn, meta.path)
            self._drop_column(conn, current, name)
            return self._load(conn, meta.path)

    def _drop_column(self, conn: sa.Connection, meta: TableMeta, name: str) -> None:
        if name not in meta.own_columns:
            if name in meta.columns:
                raise CatalogError(f"column {name!r} belongs to the base table of view {meta.path!r}")
            raise ColumnNotFound(f"column {name!r} does not exist in {meta.path!r}")
        column = meta.own_columns[name]
        if column.iterator_output:
            raise DependencyError(f"column {name!r} is produced by the view's iterator and cannot be dropped")
        dependents = [c for c in self.dependents(conn, meta, name)]
        if dependents:
            raise DependencyError(
                f"cannot drop column {name!r} of {meta.path!r}: computed columns depend on it "
                f"({', '.join(dependents)}); drop those first"
            )
        preparer = conn.dialect.identifier_preparer
        table_name = preparer.quote(schema.data_table_name(meta.id))
        for sql_column in column.sql_columns():
            conn.exec_driver_sql(f"ALTER TABLE {table_name} DROP COLUMN {preparer.quote(sql_column.name)}")
        conn.execute(schema.columns.delete().where(schema.columns.c.table_id == meta.id, schema.columns.c.name == name))
        self._bump_schema_version(conn, meta.id)

    def dependents(self, conn: sa.Connection, meta: TableMeta, name: str) -> list[str]:
        """Names (`table.column`) of computed columns and views that read column `name` of `meta`."""
        out = []
        candidates = [meta] + [self._load(conn, p) for p in self._view_paths(conn, meta.id)]
        for table in candidates:
            for column in table.own_columns.values():
                if column.computed_spec and name in _referenced_names(column.computed_spec):
                    out.append(f"{table.path}.{column.name}")
            if table is not meta and table.iterator and table.iterator.get("source") == name:
                out.append(f"{table.path} (iterator)")
        return out

    def view_paths(self, meta: TableMeta) -> list[str]:
        """Paths of the views built on `meta`."""
        with self.engine.connect() as conn:
            return self._view_paths(conn, meta.id)

    # -- internals ----------------------------------------------------------------------------
    def _view_paths(self, conn: sa.Connection, table_id: int) -> list[str]:
        rows = conn.execute(sa.select(schema.tables.c.path).where(schema.tables.c.base_id == table_id))
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

    def _load_row(self, conn: sa.Connection, row: Any) -> TableMeta:
        base = None
        if row.base_id is not None:
            base_row = conn.execute(sa.select(schema.tables).where(schema.tables.c.id == row.base_id)).first()
            base = self._load_row(conn, base_row)
        column_rows = conn.execute(
            sa.select(schema.columns).where(schema.columns.c.table_id == row.id).order_by(schema.columns.c.position)
        ).all()
        iterator_outputs = set((row.iterator or {}).get("outputs", []))
        own = {
            c.name: Column(
                name=c.name,
                col_type=ts.type_from_dict(c.col_type),
                table_name=row.path,
                owner_id=row.id,
                position=c.position,
                computed_spec=c.computed,
                on_error=c.on_error,
                destination=c.destination,
                iterator_output=c.name in iterator_outputs,
            )
            for c in column_rows
        }
        meta = TableMeta(id=row.id, path=row.path, kind=row.kind, own_columns=own, base=base, iterator=row.iterator)
        meta.schema_version = self._schema_version(conn, meta.owner_id_list())
        visible = meta.columns
        for column in own.values():
            if column.computed_spec is not None:
                column.computed = _LazyExpr(column.computed_spec, visible)
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

    def _bump_schema_version(self, conn: sa.Connection, table_id: int) -> None:
        """Stamp `table_id` with a version above every version handed out so far (ids can be reused)."""
        versions = schema.schema_versions
        stamp = conn.execute(sa.select(sa.func.coalesce(sa.func.max(versions.c.version), 0) + 1)).scalar_one()
        changed = conn.execute(versions.update().where(versions.c.table_id == table_id).values(version=stamp))
        if changed.rowcount == 0:
            conn.execute(versions.insert().values(table_id=table_id, version=stamp))

    def _drop_table_rows(self, conn: sa.Connection, table_id: int) -> None:
        preparer = conn.dialect.identifier_preparer
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {preparer.quote(schema.data_table_name(table_id))}")
        conn.execute(schema.columns.delete().where(schema.columns.c.table_id == table_id))
        conn.execute(schema.tables.delete().where(schema.tables.c.id == table_id))


class _LazyExpr:
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


def _referenced_names(spec: Any) -> set[str]:
    if isinstance(spec, dict):
        found = {spec["name"]} if spec.get("k") == "col" else set()
        for value in spec.values():
            found |= _referenced_names(value)
        return found
    if isinstance(spec, list):
        return set().union(*(_referenced_names(v) for v in spec)) if spec else set()
    return set()


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise InvalidArgument unless `value` is one of `choices`."""
    if value not in choices:
        raise InvalidArgument(f"{name} must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
