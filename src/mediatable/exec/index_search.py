"""The search structure of an index for the version a query reads, kept current with the catalog.

Each process keeps one structure per (catalog, index, version read). For the current rows:

- on a SQLite catalog, a usearch HNSW graph (:class:`GraphSearch`) once the index holds
  `HNSW_MIN_ROWS` vectors, else an exact scan; the graph proposes candidates and the stored
  float32 vectors score them exactly. On a catalog in a SQLite file the graph is also persisted
  beside the database (`<catalog>.vectors/`), so the next process loads it and catches up instead
  of building it from every vector;
- on PostgreSQL with pgvector, the server's HNSW index
  (:class:`~mediatable.exec.pgvector_search.PgVectorSearch`);
- on PostgreSQL without it, always the exact scan (:class:`~mediatable.exec.vector_search.ExactVectors`),
  whatever the size: the vectors in memory, scanned with one matrix product per query.

An earlier version is always scanned exactly. A structure is labelled with the index's epoch and
the family's version; a query whose label moved on first has the missing vectors computed
(:func:`~mediatable.exec.embedding_index.catch_up`), then catches the structure up with what changed
since its label (rows retired to the history table since, images written since) or, after a revert
(a new epoch), builds it again.

The label is read before the vectors, so a structure holds at least the state its label names; a
change committed meanwhile moves the label on and is applied at the next query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from mediatable.catalog import indexes, schema
from mediatable.catalog.catalog import read_only
from mediatable.catalog.indexes import IndexMeta
from mediatable.catalog.model import TableMeta
from mediatable.exec.pgvector_search import PgVectorSearch, ensure_hnsw
from mediatable.exec.stored_vectors import StoredVectors
from mediatable.exec.vector_search import HNSW_MIN_ROWS, ExactVectors, GraphFiles, GraphVectors, usearch_installed
from mediatable.session import Session


class GraphSearch:
    """A usearch graph's candidates (approximate: :attr:`exact` is False), scored from the stored vectors."""

    exact = False

    def __init__(self, graph: GraphVectors, stored: StoredVectors) -> None:
        self.graph = graph
        self.stored = stored

    @property
    def label(self) -> tuple[int, int]:
        return self.graph.label

    def __len__(self) -> int:
        return len(self.graph)

    def top(self, query: np.ndarray, k: int) -> list[int]:
        return self.graph.top(query, k)

    def scores(self, rowids: Sequence[int | None], query: np.ndarray) -> list[float | None]:
        return self.stored.scores(rowids, query)


Structure = ExactVectors | GraphSearch | PgVectorSearch

_structures: dict[tuple[str, int, str, int | None], Structure] = {}
_locks: dict[tuple[str, int, str, int | None], threading.Lock] = {}
_locks_guard = threading.Lock()


def label_of(conn: sa.Connection, meta: TableMeta, index: IndexMeta) -> tuple[int, int]:
    """What a structure of `meta`'s images in `index` is valid for: (epoch, version)."""
    found = indexes.get_index(conn, index.id)
    epoch = found.epoch if found is not None else -1
    if meta.at_version is not None:
        return epoch, meta.at_version
    version = conn.execute(sa.select(schema.tables.c.version).where(schema.tables.c.id == meta.root_id)).scalar_one()
    return epoch, int(version)


def graph_files(session: Session) -> GraphFiles | None:
    """Where graphs of this catalog persist: beside its SQLite file (None for other catalogs)."""
    url = session.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    database = Path(url.database)
    return GraphFiles(database.with_name(database.name + ".vectors"))


def structure(session: Session, meta: TableMeta, index: IndexMeta, catch_up: Callable[[], Any]) -> Structure:
    """The search structure for the images `meta` reads, current with the catalog (see the module doc)."""
    key = (session.settings.catalog_url, index.id, index.token, meta.at_version)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        with read_only(session.engine) as conn:
            label = label_of(conn, meta, index)
        cached = _structures.get(key)
        if cached is not None and cached.label == label:
            return cached
        catch_up()  # after the label was read: the structure holds at least the state it names
        built = _refresh(session, meta, index, label, cached)
        _structures[key] = built
        return built


def _refresh(
    session: Session, meta: TableMeta, index: IndexMeta, label: tuple[int, int], cached: Structure | None
) -> Structure:
    current = meta.at_version is None
    stored = StoredVectors(session, meta, index)
    if current and index.backend == "pgvector":
        dims = ensure_hnsw(session, index)
        if dims is not None:
            return PgVectorSearch(stored, label, dims)
    same_epoch = cached is not None and cached.label[0] == label[0]
    graphs = current and usearch_installed() and session.engine.dialect.name == "sqlite"
    files = graph_files(session) if graphs else None
    if graphs:
        graph = cached.graph if isinstance(cached, GraphSearch) and same_epoch else None
        if graph is None and files is not None:
            graph = files.load(index.id, index.token, label[0])
        if graph is not None:
            graph.apply(label, *stored.changes_since(graph.label[1]))
            if files is not None and graph.unsaved > max(1000, len(graph) // 20):
                files.save(index.id, index.token, graph)
            return GraphSearch(graph, stored)
    if current and isinstance(cached, ExactVectors) and same_epoch and not (graphs and len(cached) >= HNSW_MIN_ROWS):
        cached.apply(label, *stored.changes_since(cached.label[1]))
        return cached
    chunks = stored.chunks(first=HNSW_MIN_ROWS)
    rowids, matrix = next(chunks, (np.zeros(0, np.int64), np.zeros((0, 1), np.float32)))
    if not (graphs and len(rowids) >= HNSW_MIN_ROWS):
        rest = list(chunks)
        if rest:
            rowids = np.concatenate([rowids, *[r for r, _ in rest]])
            matrix = np.concatenate([matrix, *[m for _, m in rest]])
        return ExactVectors(label, rowids, matrix)
    graph = GraphVectors.build(label, rowids, matrix)
    for more_rowids, more in chunks:  # chunk by chunk: a million vectors are never all in memory at once
        graph.apply(label, [], more_rowids, more)
    if files is not None:
        files.save(index.id, index.token, graph)
    return GraphSearch(graph, stored)
