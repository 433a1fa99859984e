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
from mediatable.exec.rows import ROWID
from mediatable.exec.stored_vectors import StoredVectors
from mediatable.exec.vector_search import EXPANSION_SEARCH
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
            # pgvector builds many times faster when the graph fits in maintenance memory (default 64 MB)
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '1GB'")
            conn.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS {hnsw_name(index)} ON {vectors.name} "
                f"USING hnsw ((emb::vector({dims})) vector_ip_ops)"
            )
            conn.exec_driver_sql(f"ANALYZE {vectors.name}")
    return dims


class PgVectorSearch:
    """Top-k of one index's current images answered by PostgreSQL, scored from the stored vectors (valid for `label`).

    The HNSW index is approximate: :attr:`exact` tells the caller to rank the candidates by their exact scores.
    """

    exact = False

    def __init__(self, stored: StoredVectors, label: Any, dims: int) -> None:
        self.stored = stored
        self.label = label
        self.dims = dims
        self.size = stored.count()

    def __len__(self) -> int:
        return int(self.size)

    def top(self, query: np.ndarray, k: int) -> list[int]:
        """Row ids of (about) the `k` rows closest to `query`, best first (pgvector HNSW)."""
        if k <= 0 or not self.size:
            return []
        vectors = self.stored.vectors
        text = "[" + ",".join(repr(float(x)) for x in query) + "]"
        order = sa.text(f"(emb::vector({self.dims})) <#> CAST(:q AS vector({self.dims}))").bindparams(q=text)
        statement = (
            sa.select(vectors.c[ROWID])
            .select_from(self.stored.joined)
            .where(self.stored.present())
            .order_by(order)
            .limit(k)
        )
        with self.stored.session.engine.begin() as conn:  # SET LOCAL lasts for this transaction only
            # Without it the planner, its row estimates stale after a bulk insert, joins every vector and sorts
            # them all (an exact scan in the server: 170 ms at 20k rows instead of 4-8 ms through the index).
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
            conn.exec_driver_sql("SET LOCAL hnsw.iterative_scan = relaxed_order")
            conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {min(1000, max(EXPANSION_SEARCH, 2 * k))}")
            return [int(r[0]) for r in conn.execute(statement)]

    def scores(self, rowids: Sequence[int | None], query: np.ndarray) -> list[float | None]:
        """Exact cosine scores of `rowids`, from the stored float32 vectors."""
        return self.stored.scores(rowids, query)
