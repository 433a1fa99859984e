"""Similarity search inside PostgreSQL with pgvector: an HNSW index over an embedding index's vectors.

Used when the catalog is on a PostgreSQL server that has the `vector` extension (see
:func:`mediatable.catalog.indexes.pgvector_available`); elsewhere search runs in the process
(:mod:`~mediatable.exec.vector_search`). The vectors table then also stores each vector as a
pgvector `vector` (`emb`); the HNSW index (inner product over unit vectors) is built over them on
the first search, when their dimension is known, and PostgreSQL keeps it current from then on. A
top-k query asks the index for the nearest vectors among the images the query reads (iterative
index scans, so images of other versions do not crowd out the answer); scores are computed exactly
from the stored float32 vectors, so they equal the other backends' scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from mediatable.catalog.catalog import read_only
from mediatable.catalog.indexes import IndexMeta
from mediatable.catalog.model import V_MIN, TableMeta
from mediatable.exec.rows import ROWID, TableSql
from mediatable.session import Session


def hnsw_name(index: IndexMeta) -> str:
    return f"ix_mt_v{int(index.id)}_hnsw"


def ensure_hnsw(session: Session, index: IndexMeta) -> int | None:
    """Build the HNSW index over the vectors if there is none yet; returns the vectors' dimension (None: no vector)."""
    vectors = index.vectors
    with read_only(session.engine) as conn:
        sample = conn.execute(sa.select(vectors.c.vec).where(vectors.c.vec.is_not(None)).limit(1)).scalar()
        exists = conn.execute(sa.text("SELECT to_regclass(:name)"), {"name": hnsw_name(index)}).scalar()
    if sample is None:
        return None
    dims = len(bytes(sample)) // 4
    if exists is None:
        with session.engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS {hnsw_name(index)} ON {vectors.name} "
                f"USING hnsw ((emb::vector({dims})) vector_ip_ops)"
            )
    return dims


class PgVectorSearch:
    """Top-k and scores of one index's current images, answered by PostgreSQL (valid for `label`)."""

    def __init__(self, session: Session, meta: TableMeta, index: IndexMeta, label: Any, dims: int) -> None:
        self.session = session
        self.meta = meta
        self.index = index
        self.label = label
        self.dims = dims
        images = TableSql(meta).table
        self.vectors = vectors = index.vectors  # one Table object for every statement below
        self._joined = images.join(
            vectors, sa.and_(vectors.c[ROWID] == images.c[ROWID], vectors.c[V_MIN] == images.c[V_MIN])
        )
        with read_only(session.engine) as conn:
            self.size = conn.execute(
                sa.select(sa.func.count()).select_from(self._joined).where(vectors.c.vec.is_not(None))
            ).scalar_one()

    def __len__(self) -> int:
        return int(self.size)

    def top(self, query: np.ndarray, k: int) -> list[int]:
        """Row ids of (about) the `k` rows closest to `query`, best first (pgvector HNSW)."""
        if k <= 0 or not self.size:
            return []
        vectors = self.vectors
        text = "[" + ",".join(repr(float(x)) for x in query) + "]"
        order = sa.text(f"(emb::vector({self.dims})) <#> CAST(:q AS vector({self.dims}))").bindparams(q=text)
        statement = (
            sa.select(vectors.c[ROWID])
            .select_from(self._joined)
            .where(vectors.c.vec.is_not(None))
            .order_by(order)
            .limit(k)
        )
        with self.session.engine.begin() as conn:  # SET LOCAL lasts for this transaction only
            conn.exec_driver_sql("SET LOCAL hnsw.iterative_scan = relaxed_order")
            conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, 2 * k))}")
            return [int(r[0]) for r in conn.execute(statement)]

    def scores(self, rowids: Sequence[int], query: np.ndarray) -> list[float | None]:
        """Exact cosine scores of `rowids`, from the stored float32 vectors."""
        known = [int(r) for r in rowids if r is not None]
        vectors = self.vectors
        found: dict[int, float] = {}
        with read_only(self.session.engine) as conn:
            for start in range(0, len(known), 1000):
                chunk = known[start : start + 1000]
                rows = conn.execute(
                    sa.select(vectors.c[ROWID], vectors.c.vec)
                    .select_from(self._joined)
                    .where(vectors.c[ROWID].in_(chunk), vectors.c.vec.is_not(None))
                )
                for rowid, blob in rows:
                    found[int(rowid)] = float(np.frombuffer(bytes(blob), dtype="<f4") @ query)
        return [None if r is None else found.get(int(r)) for r in rowids]
