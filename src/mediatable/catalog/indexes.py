"""Embedding indexes in the catalog: which column of which table, embedded by which function.

One row per index in `mt_embedding_indexes`. The column is named by its SQL column (`stem`), so the
index follows a rename. The vectors of index `<id>` live in `mt_v<id>`, one per *row image*: a row
of a table as one version wrote it (`_rowid`, `_v_min`, see :mod:`.versions`). Row images never
change (a change writes a new image and keeps the old one in the history table), so a vector is
computed once per image and serves the current rows and every earlier version alike: version `n`
is searched through the images `n` reads. A vector also carries a digest of the value it embeds,
so an image whose indexed value did not change (another column was updated) reuses the vector.

Reverting version `v` removes the images `v` wrote; their vectors go in the same transaction, and
the index's `epoch` moves on so that processes holding search structures rebuild them (version
numbers are handed out again after a revert). Dropping a table drops its indexes; dropping,
replacing or un-adding (by a revert) an indexed column is refused while the index exists.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from mediatable.catalog import schema
from mediatable.catalog.model import ROWID, V_MIN, Column, TableMeta
from mediatable.errors import AlreadyExists, DependencyError, InvalidArgument, NotFoundError
from mediatable.exprs import serialize

metadata = sa.MetaData()

embedding_indexes = sa.Table(
    "mt_embedding_indexes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("table_id", sa.Integer, nullable=False, index=True),
    sa.Column("root_id", sa.Integer, nullable=False, index=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("stem", sa.String(64), nullable=False),  # the indexed column's SQL column (renames keep it)
    sa.Column("embedding", sa.JSON, nullable=False),  # how to find the embedding function (serialize.function_ref)
    sa.Column("epoch", sa.Integer, nullable=False),  # moves on when a revert removes vectors
    sa.Column("token", sa.String(32), nullable=False),  # tells this index from an earlier one that had its id
    sa.Column("backend", sa.String(16), nullable=False),  # 'pgvector': also stored as pgvector vectors; else 'memory'
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("table_id", "name"),
)


class PgVector(sa.types.UserDefinedType[Any]):
    """pgvector's `vector` type: a float sequence, sent as its text form `[x, y, ...]`."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "vector"

    def bind_processor(self, dialect: Any) -> Any:
        def process(value: Any) -> str | None:
            return None if value is None else "[" + ",".join(repr(float(x)) for x in value) + "]"

        return process

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.cast(bindvalue, self)


def vectors_table(index_id: int, pgvector: bool = False) -> sa.Table:
    """The SQL table holding the vectors of index `index_id`, one per row image."""
    name = f"mt_v{int(index_id)}"
    extra = [sa.Column("emb", PgVector(), nullable=True)] if pgvector else []
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(ROWID, sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column(V_MIN, sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.String(40), nullable=False),
        sa.Column("vec", sa.LargeBinary, nullable=True),  # little-endian float32, unit length; NULL: see error
        sa.Column("error", sa.Text, nullable=True),
        *extra,
        sa.Index(f"ix_{name}_digest", "digest"),
    )


def pgvector_available(conn: sa.Connection) -> bool:
    """Whether the catalog's server has pgvector: installed in the database, or installed now if it can be."""
    if conn.dialect.name != "postgresql":
        return False
    installed = "SELECT 1 FROM pg_extension WHERE extname = 'vector'"
    if conn.exec_driver_sql(installed).first() is not None:
        return True
    if conn.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").first() is None:
        return False
    try:
        with conn.begin_nested():  # a server that refuses (no privilege) leaves the outer transaction intact
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    except sa.exc.DBAPIError:
        return False
    return True


@dataclasses.dataclass
class IndexMeta:
    """One embedding index: its identity, the indexed column's SQL column and the embedding function's reference."""

    id: int
    table_id: int
    root_id: int
    name: str
    stem: str
    embedding_ref: dict[str, Any]
    epoch: int
    token: str
    backend: str = "memory"
    _function: Any = dataclasses.field(default=None, repr=False)

    @property
    def function(self) -> Any:
        """The embedding :class:`~mediatable.functions.udf.Function` (imported on first use)."""
        if self._function is None:
            self._function = serialize.load_function(self.embedding_ref)
        return self._function

    @property
    def vectors(self) -> sa.Table:
        return vectors_table(self.id, pgvector=self.backend == "pgvector")

    def column(self, meta: TableMeta) -> Column | None:
        """The indexed column as `meta` (current or an earlier version) sees it; None if it has none.

        A view's index may be on a column of its base (see :func:`indexable_owner`).
        """
        return next((c for c in meta.columns.values() if c.stem == self.stem), None)


def indexable_owner(meta: TableMeta, column: Column) -> TableMeta:
    """The table storing `column`, whose row images an index of `meta` on it embeds: `meta`, or a view's base.

    Raises:
        InvalidArgument: the column belongs to a base further down (a view of a view).
    """
    if column.owner_id == meta.id:
        return meta
    if meta.base is not None and column.owner_id == meta.base.id:
        return meta.base
    raise InvalidArgument(
        f"column {column.name!r} of {meta.path!r} is stored by {column.table_name!r}, more than one base away: "
        f"index it on {column.table_name!r} or on a view directly over it"
    )


def _row_to_meta(row: Any) -> IndexMeta:
    return IndexMeta(
        row.id, row.table_id, row.root_id, row.name, row.stem, row.embedding, row.epoch, row.token, row.backend
    )


def list_indexes(conn: sa.Connection, table_id: int) -> list[IndexMeta]:
    """The indexes of a table, oldest first."""
    rows = conn.execute(
        sa.select(embedding_indexes).where(embedding_indexes.c.table_id == table_id).order_by(embedding_indexes.c.id)
    )
    return [_row_to_meta(r) for r in rows]


def family_indexes(conn: sa.Connection, root_id: int) -> list[IndexMeta]:
    """The indexes of every table and view of a family, oldest first."""
    rows = conn.execute(
        sa.select(embedding_indexes).where(embedding_indexes.c.root_id == root_id).order_by(embedding_indexes.c.id)
    )
    return [_row_to_meta(r) for r in rows]


def get_index(conn: sa.Connection, index_id: int) -> IndexMeta | None:
    """The index with id `index_id`, or None if it was dropped."""
    row = conn.execute(sa.select(embedding_indexes).where(embedding_indexes.c.id == index_id)).first()
    return None if row is None else _row_to_meta(row)


def add_index(conn: sa.Connection, meta: TableMeta, name: str, column: Column, function: Any) -> IndexMeta:
    """Record a new index on `column` of `meta` and create its (empty) vectors table."""
    if any(i.name == name for i in list_indexes(conn, meta.id)):
        raise AlreadyExists(f"an embedding index named {name!r} already exists (pass if_exists='replace')")
    backend = "pgvector" if pgvector_available(conn) else "memory"
    index_id = conn.execute(
        embedding_indexes.insert().values(
            table_id=meta.id,
            root_id=meta.root_id,
            name=name,
            stem=column.stem,
            embedding=serialize.function_ref(function),
            epoch=0,
            token=uuid.uuid4().hex,
            backend=backend,
            created_at=dt.datetime.now(dt.UTC),
        )
    ).inserted_primary_key[0]
    vectors_table(index_id, pgvector=backend == "pgvector").create(conn)
    found = get_index(conn, index_id)
    assert found is not None
    return found


def drop_index(conn: sa.Connection, index: IndexMeta) -> None:
    """Drop an index and its vectors."""
    index.vectors.drop(conn, checkfirst=True)
    conn.execute(embedding_indexes.delete().where(embedding_indexes.c.id == index.id))


def find_index(
    conn: sa.Connection, meta: TableMeta, *, name: str | None = None, column: str | None = None
) -> IndexMeta:
    """The index of `meta` with that name, or the only one on that column.

    Raises:
        NotFoundError: there is none, or `column` has several (name one).
    """
    stem = meta.columns[column].stem if column is not None and column in meta.columns else None
    found = [
        i
        for i in list_indexes(conn, meta.id)
        if (name is None or i.name == name) and (column is None or i.stem == stem)
    ]
    if len(found) != 1:
        what = f"named {name!r}" if name else f"on column {column!r}"
        reason = "no embedding index" if not found else f"{len(found)} embedding indexes (pass index=NAME)"
        raise NotFoundError(f"{reason} {what}" + (" (add one with t.add_embedding_index(...))" if not found else ""))
    return found[0]


def drop_table_indexes(conn: sa.Connection, table_id: int) -> None:
    """Drop every index of a table (in the transaction that drops the table)."""
    for index in list_indexes(conn, table_id):
        drop_index(conn, index)


def check_column_drop(conn: sa.Connection, meta: TableMeta, column: Column, verb: str = "drop") -> None:
    """Refuse to drop (or replace) a column an embedding index reads (an index of the table or of a view over it)."""
    found = [i for i in family_indexes(conn, meta.root_id) if i.stem == column.stem]
    if found:
        where = "" if found[0].table_id == meta.id else f" of view {_table_path(conn, found[0].table_id)!r}"
        raise DependencyError(
            f"cannot {verb} column {column.name!r} of {meta.path!r}: embedding index {found[0].name!r}{where} reads "
            f"it; drop it first with t.drop_embedding_index(name={found[0].name!r})"
        )


def _table_path(conn: sa.Connection, table_id: int) -> str:
    return str(conn.execute(sa.select(schema.tables.c.path).where(schema.tables.c.id == table_id)).scalar())


def revert_vectors(conn: sa.Connection, family: Sequence[TableMeta], version: int) -> None:
    """While `version` is reverted: drop the vectors of the images it wrote and move the indexes' epoch on.

    Raises:
        DependencyError: `version` added a column an index reads (the revert would remove it).
    """
    if not family:
        return
    for index in family_indexes(conn, family[0].root_id):
        added = conn.execute(
            sa.select(schema.columns.c.name).where(  # a stem is one column's (renames keep it), whichever table
                schema.columns.c.stem == index.stem,
                schema.columns.c.v_min == version,
            )
        ).first()
        if (
            added is not None
            and not conn.execute(
                sa.select(schema.columns.c.id).where(
                    schema.columns.c.stem == index.stem,
                    schema.columns.c.v_min < version,
                )
            ).first()
        ):
            raise DependencyError(
                f"cannot revert version {version}: it added column {added.name!r}, which embedding index "
                f"{index.name!r} reads; drop the index first"
            )
        vectors = index.vectors
        conn.execute(vectors.delete().where(vectors.c[V_MIN] == version))
        conn.execute(
            embedding_indexes.update()
            .where(embedding_indexes.c.id == index.id)
            .values(epoch=embedding_indexes.c.epoch + 1)
        )
