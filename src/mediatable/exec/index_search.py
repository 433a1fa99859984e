"""The search structure of an index for the version a query reads, kept current with the catalog.

Each process keeps one structure per (catalog, index, version read): for the current rows a
:class:`~mediatable.exec.vector_search.GraphVectors` (usearch HNSW) once the index holds
`HNSW_MIN_ROWS` vectors, else an :class:`~mediatable.exec.vector_search.ExactVectors` scan; for
an earlier version (or without usearch) always the exact scan. A structure is labelled with the
index's epoch and the family's version; a query whose label moved on first has the missing
vectors computed (:func:`~mediatable.exec.embedding_index.catch_up`), then catches the graph up
with what changed since its label (rows retired to the history table since, images written since)
or, after a revert (a new epoch), builds it again. On a catalog in a SQLite file the graph is also
persisted beside the database (`<catalog>.vectors/`), so the next process loads it and catches up
instead of building it from every vector.

On PostgreSQL with pgvector, the current rows are searched by the server instead
(:class:`~mediatable.exec.pgvector_search.PgVectorSearch`); earlier versions are scanned exactly.

The label is read before the vectors, so a structure holds at least the state its label names; a
change committed meanwhile moves the label on and is applied at the next query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from mediatable.catalog import indexes, schema
from mediatable.catalog.catalog import read_only
from mediatable.catalog.indexes import IndexMeta
from mediatable.catalog.model import V_MAX, V_MIN, TableMeta
from mediatable.exec.pgvector_search import PgVectorSearch, ensure_hnsw
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exec.vector_search import HNSW_MIN_ROWS, ExactVectors, GraphFiles, GraphVectors, usearch_installed
from mediatable.session import Session

Structure = ExactVectors | GraphVectors | PgVectorSearch
CHUNK = 50_000

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
    if current and index.backend == "pgvector":
        dims = ensure_hnsw(session, index)
        if dims is not None:
            return PgVectorSearch(session, meta, index, label, dims)
    files = graph_files(session) if current else None
    if current and usearch_installed():
        graph = cached if isinstance(cached, GraphVectors) and cached.label[0] == label[0] else None
        if graph is None and files is not None:
            graph = files.load(index.id, index.token, label[0])
        if graph is not None:
            removed, rowids, matrix = _changes_since(session, meta, index, graph.label[1])
            graph.apply(label, removed, rowids, matrix)
            if files is not None and graph.unsaved > max(1000, len(graph) // 20):
                files.save(index.id, index.token, graph)
            return graph
    chunks = _vector_chunks(session, meta, index)
    rowids, matrix = next(chunks, (np.zeros(0, np.int64), np.zeros((0, 1), np.float32)))
    if not (current and usearch_installed() and len(rowids) >= HNSW_MIN_ROWS):
        rest = list(chunks)
        if rest:
            rowids = np.concatenate([rowids, *[r for r, _ in rest]])
            matrix = np.concatenate([matrix, *[m for _, m in rest]])
        return ExactVectors(label, rowids, matrix)
    graph = GraphVectors.build(label, rowids, matrix)
    for more_rowids, more in chunks:
        graph.apply(label, [], more_rowids, more)
    if files is not None:
        files.save(index.id, index.token, graph)
    return graph


def _vector_chunks(session: Session, meta: TableMeta, index: IndexMeta) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The vectors of the images `meta` reads, in chunks of row ids and unit vectors (first chunk: HNSW_MIN_ROWS)."""
    images = TableSql(meta).table
    vectors = index.vectors
    joined = images.join(vectors, sa.and_(vectors.c[ROWID] == images.c[ROWID], vectors.c[V_MIN] == images.c[V_MIN]))
    query = sa.select(vectors.c[ROWID], vectors.c.vec).select_from(joined).where(vectors.c.vec.is_not(None))
    with read_only(session.engine) as conn:
        result = conn.execute(query.execution_options(yield_per=CHUNK))
        size = HNSW_MIN_ROWS
        while rows := result.fetchmany(size):
            yield _to_arrays(rows)
            size = CHUNK


def _changes_since(
    session: Session, meta: TableMeta, index: IndexMeta, version: int
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """What changed in `meta`'s current images after `version`: row ids whose image went, new images' vectors."""
    data, history = meta.sql_table(), meta.history_table()
    vectors = index.vectors
    joined = data.join(vectors, sa.and_(vectors.c[ROWID] == data.c[ROWID], vectors.c[V_MIN] == data.c[V_MIN]))
    with read_only(session.engine) as conn:
        removed = [r[0] for r in conn.execute(sa.select(history.c[ROWID]).where(history.c[V_MAX] > version))]
        rows = conn.execute(
            sa.select(vectors.c[ROWID], vectors.c.vec)
            .select_from(joined)
            .where(data.c[V_MIN] > version, vectors.c.vec.is_not(None))
        ).all()
    rowids, matrix = _to_arrays(rows)
    return removed, rowids, matrix


def _to_arrays(rows: Any) -> tuple[np.ndarray, np.ndarray]:
    rowids = np.array([r[0] for r in rows], dtype=np.int64)
    if not rows:
        return rowids, np.zeros((0, 1), np.float32)
    dims = len(bytes(rows[0][1])) // 4
    matrix = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4").reshape(len(rows), dims)
    return rowids, matrix.astype(np.float32)
