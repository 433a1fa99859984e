"""Reading an embedding index's vectors from the catalog, for the images one version of a table reads.

The vectors table of an index (`mt_v<id>`, see :mod:`mediatable.catalog.indexes`) holds one
float32 unit vector per row image; :class:`StoredVectors` joins it with the images a table (current
or an earlier version) reads, and gives what search structures are built and kept current from:
every vector in chunks, what changed since a version, and the exact scores of given rows. Exact
scores come from here whatever structure found the candidates, so they are the same on every backend.

An index of a view on a column of its base embeds the base's row images that the view's rows come
from (:class:`IndexedImages`): a change of the base column gives the base row a new image, which
the index embeds like any other, and the view's rows are scored by their `_base_rowid`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from mediatable.catalog import indexes
from mediatable.catalog.catalog import read_only
from mediatable.catalog.indexes import IndexMeta
from mediatable.catalog.model import V_MAX, V_MIN, Column, TableMeta
from mediatable.exec.rows import BASE_ROWID, ROWID, TableSql
from mediatable.session import Session

CHUNK = 50_000
SCORE_CHUNK = 1000


class IndexedImages:
    """The row images an index of `meta` on `column` embeds (current rows, or an earlier version's).

    Attributes:
        owner: the table storing the column: `meta`, or for a view indexed on a base column its base.
        table: the owner's images as `meta`'s version reads them (SQL table or derived table).
        key: the name of the row field that holds the owner's row id in rows read from `meta`.
    """

    def __init__(self, meta: TableMeta, column: Column | None) -> None:
        self.meta = meta
        sql = TableSql(meta)
        self.owner = meta if column is None else indexes.indexable_owner(meta, column)
        self.view = sql.table if self.owner is not meta else None
        self.table: Any = sql.table if self.view is None else sql.base.table  # type: ignore[union-attr]
        self.key = ROWID if self.view is None else BASE_ROWID

    def members(self) -> sa.ColumnElement[bool]:
        """Which of the owner's images `meta` reads (all of them, unless the owner is a view's base)."""
        if self.view is None:
            return sa.true()
        return self.table.c[ROWID].in_(sa.select(self.view.c[BASE_ROWID]))

    def touched_since(self, version: int) -> sa.ColumnElement[bool]:
        """Owner rows whose view rows changed after `version` (for the current rows; nothing for a table)."""
        if self.view is None:
            return sa.false()
        history = self.meta.history_table()
        return self.table.c[ROWID].in_(
            sa.union(
                sa.select(history.c[BASE_ROWID]).where(history.c[V_MAX] > version),
                sa.select(self.view.c[BASE_ROWID]).where(self.view.c[V_MIN] > version),
            )
        )


class StoredVectors:
    """The stored vectors of `index` for the images `meta` reads (its current rows, or an earlier version's)."""

    def __init__(self, session: Session, meta: TableMeta, index: IndexMeta) -> None:
        self.session = session
        self.meta = meta
        self.images = IndexedImages(meta, index.column(meta))
        self.vectors = vectors = index.vectors  # one Table object for every statement built from it
        images = self.images.table
        self.joined = images.join(
            vectors, sa.and_(vectors.c[ROWID] == images.c[ROWID], vectors.c[V_MIN] == images.c[V_MIN])
        )

    def count(self) -> int:
        """How many of the images have a vector."""
        query = sa.select(sa.func.count()).select_from(self.joined).where(self.present())
        with read_only(self.session.engine) as conn:
            return int(conn.execute(query).scalar_one())

    def chunks(self, first: int = CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every vector, as (row ids, unit vectors) chunks: the first of `first` rows, then of CHUNK."""
        vectors = self.vectors
        query = sa.select(vectors.c[ROWID], vectors.c.vec).select_from(self.joined).where(self.present())
        with read_only(self.session.engine) as conn:
            result = conn.execute(query.execution_options(yield_per=CHUNK))
            size = first
            while rows := result.fetchmany(size):
                yield to_arrays(rows)
                size = CHUNK

    def changes_since(self, version: int) -> tuple[list[int], np.ndarray, np.ndarray]:
        """What changed in the current images after `version`: row ids whose image went, new images' vectors."""
        images, vectors = self.images, self.vectors
        history = images.owner.history_table()
        retired = [sa.select(history.c[ROWID]).where(history.c[V_MAX] > version)]
        if images.view is not None:  # a view's rows that went: their base row may have left the view
            view_history = self.meta.history_table()
            retired.append(sa.select(view_history.c[BASE_ROWID]).where(view_history.c[V_MAX] > version))
        changed = sa.or_(images.table.c[V_MIN] > version, images.touched_since(version))
        with read_only(self.session.engine) as conn:
            removed = [r[0] for r in conn.execute(retired[0] if len(retired) == 1 else sa.union(*retired))]
            rows = conn.execute(
                sa.select(vectors.c[ROWID], vectors.c.vec).select_from(self.joined).where(changed, self.present())
            ).all()
        rowids, matrix = to_arrays(rows)
        return removed, rowids, matrix

    def scores(self, rowids: Sequence[int | None], query: np.ndarray) -> list[float | None]:
        """Exact cosine scores of `rowids` (None for a row without a vector)."""
        known = sorted({int(r) for r in rowids if r is not None})
        vectors = self.vectors
        found: dict[int, float] = {}
        with read_only(self.session.engine) as conn:
            for start in range(0, len(known), SCORE_CHUNK):
                rows = conn.execute(
                    sa.select(vectors.c[ROWID], vectors.c.vec)
                    .select_from(self.joined)
                    .where(vectors.c[ROWID].in_(known[start : start + SCORE_CHUNK]), self.present())
                )
                for rowid, blob in rows:
                    found[int(rowid)] = float(np.frombuffer(bytes(blob), dtype="<f4") @ query)
        return [None if r is None else found.get(int(r)) for r in rowids]

    def present(self) -> sa.ColumnElement[bool]:
        """Images the version reads that have a vector."""
        return sa.and_(self.vectors.c.vec.is_not(None), self.images.members())


def to_arrays(rows: Any) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, float32 matrix) from rows of (row id, little-endian float32 blob)."""
    rowids = np.array([r[0] for r in rows], dtype=np.int64)
    if not rows:
        return rowids, np.zeros((0, 1), np.float32)
    dims = len(bytes(rows[0][1])) // 4
    matrix = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4").reshape(len(rows), dims)
    return rowids, matrix.astype(np.float32)
