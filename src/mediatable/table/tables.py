"""Creating, opening and dropping tables and views over a :class:`~mediatable.session.Session`;
the module-level API (`mt.create_table`, ...) calls these with the current session."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.catalog.catalog import check_choice
from mediatable.catalog.model import TableMeta
from mediatable.catalog.schema import as_column_name
from mediatable.errors import AlreadyExists, InvalidArgument
from mediatable.exec import query as run
from mediatable.exec import views
from mediatable.exprs import ColumnRef
from mediatable.importers import RowSource
from mediatable.session import Session
from mediatable.table.base import check_column_names
from mediatable.table.table import Table


class IteratorSpec:
    """What `mt.frames(videos.video, fps=1)` returns: which iterator, over which column, with which options."""

    def __init__(self, name: str, source: ColumnRef, **kwargs: Any) -> None:
        if not isinstance(source, ColumnRef):
            raise InvalidArgument(f"{name}() takes a column of the base table, e.g. mt.{name}(videos.video)")
        self.name = name
        self.source = source
        self.kwargs = {k: v for k, v in kwargs.items() if v is not None}

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.name}({self.source!r}{options})"


def create_table(
    session: Session,
    path: str,
    schema: Mapping[str, Any] | None = None,
    if_exists: str = "error",
    *,
    source: Any = None,
    schema_overrides: Mapping[str, Any] | None = None,
    primary_key: str | Sequence[str] | None = None,
    media_validation: str = "on_read",
) -> Table:
    """Create a table, empty or filled from `source` (see :func:`mediatable.create_table`)."""
    key = [primary_key] if isinstance(primary_key, str) else list(primary_key or [])
    options = {"primary_key": key, "media_validation": media_validation}
    if source is None:
        if schema_overrides:
            raise InvalidArgument("schema_overrides= needs source=: it overrides the types inferred from a source")
        if not isinstance(schema, Mapping) or not schema:
            raise InvalidArgument(
                "create_table() needs a schema: a dict of column name -> type, e.g. {'image': mt.Image}"
            )
        columns = {name: ts.as_column_type(t) for name, t in schema.items()}
        check_column_names(Table, columns)
        existing = _existing(session, path, if_exists, "table")
        return existing or Table(session, session.catalog.create_table(path, columns, **options))
    rows = RowSource(source)
    columns, renames = _source_schema(rows, {**(schema or {}), **(schema_overrides or {})})
    check_column_names(Table, columns)
    check_choice("if_exists", if_exists, ("error", "ignore", "replace"))
    replacing = if_exists == "replace" and path in session.catalog.list_tables()
    if not replacing:
        existing = _existing(session, path, if_exists, "table")
        if existing is not None:
            return existing
    # Imported under a draft name and moved into place at the end: a rejected row leaves no table
    # behind, and the table it was to replace untouched.
    parent, _, name = path.rpartition(".")
    draft = (
        f"{parent}.{name[:40]}_import_{secrets.token_hex(4)}"
        if parent
        else f"{name[:40]}_import_{secrets.token_hex(4)}"
    )
    table = Table(session, session.catalog.create_table(draft, columns, **options))
    try:
        table.insert(rows.renamed(renames), quiet=True)
        meta = session.catalog.move_table(draft, path, replace=replacing)
    except BaseException:
        session.catalog.drop_table(draft, if_not_exists="ignore", force=True)
        raise
    return Table(session, meta)


def _source_schema(rows: RowSource, overrides: Mapping[str, Any]) -> tuple[dict[str, ts.ColumnType], dict[str, str]]:
    """The columns of a table created from `rows` (inferred types, then `overrides`), and source name -> column name.

    Source names that are not valid column names are converted (`'Image URL'` -> `image_url`);
    `overrides` may use either spelling.
    """
    inferred = rows.infer_schema()
    renames = {name: as_column_name(name) for name in inferred}
    by_column: dict[str, str] = {}
    for name, column in renames.items():
        if column in by_column:
            raise InvalidArgument(f"source columns {by_column[column]!r} and {name!r} both become column {column!r}")
        by_column[column] = name
    columns = {renames[name]: kind for name, kind in inferred.items()}
    unknown = []
    for name, kind in overrides.items():
        column = renames.get(name, name)
        if column not in columns:
            unknown.append(name)
            continue
        columns[column] = ts.as_column_type(kind)
    if unknown:
        raise InvalidArgument(
            f"schema_overrides names columns that {rows.description} does not have: {', '.join(map(repr, unknown))} "
            f"(its columns: {', '.join(inferred) or 'none'})"
        )
    if not columns:
        raise InvalidArgument(f"{rows.description} has no columns to create a table from")
    return columns, {name: column for name, column in renames.items() if name != column}


def create_view(session: Session, path: str, base: Table, iterator: IteratorSpec, if_exists: str = "error") -> Table:
    """Create a view with an iterator and fill it from the base table's rows (see :func:`mediatable.create_view`)."""
    if not isinstance(iterator, IteratorSpec):
        raise InvalidArgument("iterator= must be mt.frames(...), mt.audio_chunks(...) or mt.document_pages(...)")
    if iterator.source.column.owner_id not in base._meta.owner_ids():
        raise InvalidArgument(f"the iterator reads {iterator.source!r}, which is not a column of {base.path!r}")
    views.check_iterator_args(iterator.name, iterator.kwargs)
    existing = _existing(session, path, if_exists, "view")
    if existing is not None:
        return existing
    iterator_cls = views.ITERATORS[iterator.name]
    clashes = set(iterator_cls.output_schema) & set(base.columns)
    if clashes:
        raise AlreadyExists(f"the base table already has columns named {', '.join(sorted(clashes))}")
    spec = {
        "name": iterator.name,
        "source": iterator.source.column.name,
        "kwargs": iterator.kwargs,
        "outputs": list(iterator_cls.output_schema),
    }
    base_meta = base._current_meta()

    def fill(conn: sa.Connection, meta: TableMeta) -> None:
        # Read under the family's lock (taken by the view's creation): no base insert can slip in between.
        base_rows = run.matching_rows(session, run.QuerySpec(base_meta))
        if base_rows:
            with session.cache_lease() as lease:
                views.propagate(session, meta, lease, base_rows, None, conn=conn, version=meta.created_version)

    # One transaction: a failure or a kill while the view fills leaves no view and no version.
    meta = session.catalog.create_table(
        path, dict(iterator_cls.output_schema), base=base_meta, iterator=spec, populate=fill
    )
    return Table(session, meta)


def create_snapshot(session: Session, path: str, table: Table) -> Table:
    """Freeze `table`'s current version (or the version a read-only handle reads) under `path`."""
    return Table(session, session.catalog.create_snapshot(path, table._meta))


def move(session: Session, path: str | Table, new_path: str) -> None:
    """Move a table, view, snapshot or directory (see :func:`mediatable.move`)."""
    if isinstance(path, Table):
        path = path.path
    session.catalog.move(path, new_path)


def get_table(session: Session, path: str) -> Table:
    """A handle on the table or view at `path`, or at `path:N` its read-only version N. Raises TableNotFound."""
    version = None
    if isinstance(path, str) and ":" in path:
        path, _, number = path.rpartition(":")
        if not number.isdigit():
            raise InvalidArgument(f"a version after ':' is a number, as in 'dir.table:3', not {number!r}")
        version = int(number)
    return Table(session, session.catalog.get_table(path, version=version))


def drop_table(session: Session, path: str | Table, if_not_exists: str = "error", force: bool = False) -> None:
    """Drop a table or view (see :func:`mediatable.drop_table`)."""
    if isinstance(path, Table):
        path = path.path
    session.catalog.drop_table(path, if_not_exists=if_not_exists, force=force)


def _existing(session: Session, path: str, if_exists: str, kind: str) -> Table | None:
    """Apply `if_exists` to `path`: the existing table to keep, or None to create it (anew)."""
    check_choice("if_exists", if_exists, ("error", "ignore", "replace"))
    if path not in session.catalog.list_tables():
        return None
    if if_exists == "ignore":
        return get_table(session, path)
    if if_exists == "replace":
        session.catalog.drop_table(path, force=True)
        return None
    raise AlreadyExists(f"{kind} {path!r} already exists (pass if_exists='ignore' or 'replace')")
