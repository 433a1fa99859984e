"""Keeping embedding indexes current, and binding similarity queries to them.

Maintenance (:func:`catch_up`): the vectors of an index are computed per row image (see
:mod:`mediatable.catalog.indexes`). After a change commits (insert, update, recompute), the images
of the table's current rows that have no vector yet get one: an image whose indexed value has a
vector already (same digest) reuses it; the others are embedded through the same pipeline as
computed columns (media fetched through the cache, batched UDFs). The vectors are written under the
family's lock, and only for images that still hold the value that was embedded, so a revert or a
change racing the embedding never leaves a vector that does not belong to its image. A row whose
value is None or whose embedding failed keeps a NULL vector (with the reason) and is never a search
result. Work that a crash interrupted is picked up by the next write or search, and an earlier
version (`t.get_version(n)`, a snapshot) has its own images' vectors computed when it is searched.

Search: :func:`bind` gives each similarity node of a query a scorer over the index's search
structure for the version the query reads (:mod:`~mediatable.exec.index_search`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import sqlalchemy as sa

from mediatable import types as ts
from mediatable.catalog import indexes, versions
from mediatable.catalog.catalog import read_only
from mediatable.catalog.indexes import IndexMeta
from mediatable.catalog.model import V_MIN, Column, TableMeta
from mediatable.errors import ExprError, NotFoundError
from mediatable.exec import index_search
from mediatable.exec.pipeline import Pipeline, Target
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exec.stored_vectors import IndexedImages
from mediatable.exprs import CellError, ColumnRef, Expr, FunctionCall
from mediatable.exprs.similarity import Similarity
from mediatable.session import Session

BATCH = 1000
OVERSAMPLE = 16  # an approximate top-k asks for 2k + 16 candidates and keeps the k best by exact score


def table_indexes(session: Session, meta: TableMeta) -> list[IndexMeta]:
    """The embedding indexes of a table or view."""
    with read_only(session.engine) as conn:
        return indexes.list_indexes(conn, meta.id)


# -- maintenance --------------------------------------------------------------------------------


def after_change(session: Session, meta: TableMeta) -> None:
    """Vectors for the new row images of every indexed member of `meta`'s family (after a change committed)."""
    with read_only(session.engine) as conn:
        found = indexes.family_indexes(conn, meta.root_id)
    for index in found:
        catch_up(session, session.catalog.get_table_by_id(index.table_id), index)


_caught_up: dict[tuple[str, int, str, int], int] = {}  # (catalog, index, token, epoch) -> version, see catch_up
_caught_up_lock = threading.Lock()


def catch_up(session: Session, meta: TableMeta, index: IndexMeta) -> int:
    """Vectors for every image `meta` reads (its current rows, or an earlier version's) that has none.

    For the current rows, this process remembers the version up to which every image had its vector
    (read before it looked): images of a version never change (a revert starts a new epoch), so the
    next catch-up looks only at images written after it. Returns how many could not be computed.
    """
    column = index.column(meta)
    if column is None:
        return 0
    indexed = IndexedImages(meta, column)
    images = indexed.table
    vectors = index.vectors
    joined = images.outerjoin(
        vectors, sa.and_(vectors.c[ROWID] == images.c[ROWID], vectors.c[V_MIN] == images.c[V_MIN])
    )
    query = (
        sa.select(images.c[ROWID], images.c[V_MIN], *_value_columns(images, column))
        .select_from(joined)
        .where(vectors.c[ROWID].is_(None), indexed.members())
        .order_by(images.c[ROWID])
    )
    key: tuple[str, int, str, int] | None = None
    with read_only(session.engine) as conn:
        if meta.at_version is None:
            epoch, version = index_search.label_of(conn, meta, index)
            key = (session.settings.catalog_url, index.id, index.token, epoch)
            with _caught_up_lock:
                since = _caught_up.get(key)
            if since is not None:
                query = query.where(images.c[V_MIN] > since)
        missing = conn.execute(query).all()
    failed = 0
    for start in range(0, len(missing), BATCH):
        failed += _index_images(session, indexed.owner, index, column, missing[start : start + BATCH])
    if key is not None:
        with _caught_up_lock:
            _caught_up[key] = max(version, _caught_up.get(key, version))
    return failed


def _value_columns(table: Any, column: Column) -> list[Any]:
    out = [table.c[column.sql_name]]
    if column.is_computed:
        out.append(table.c[column.error_names[0]])
    return out


def _digest(record: Sequence[Any]) -> str:
    """A digest of an image's stored value (and error type): images with equal digests embed alike."""
    return hashlib.sha1(repr(tuple(record)).encode("utf-8", "surrogatepass")).hexdigest()


def _index_images(session: Session, owner: TableMeta, index: IndexMeta, column: Column, images: Sequence[Any]) -> int:
    """Vectors for `images` of the table storing `column` (`owner`: the indexed table, or a view's base)."""
    records = [{ROWID: r[0], V_MIN: r[1], "digest": _digest(r[2:]), "vec": None, "error": None} for r in images]
    vectors = index.vectors
    with read_only(session.engine) as conn:
        digests = list({r["digest"] for r in records})
        known = dict(
            conn.execute(
                sa.select(vectors.c.digest, vectors.c.vec).where(
                    vectors.c.digest.in_(digests), vectors.c.vec.is_not(None)
                )
            ).all()
        )
    to_embed: list[dict[str, Any]] = []
    for record, image in zip(records, images, strict=True):
        stored, error = image[2], image[3] if column.is_computed else None
        if record["digest"] in known:
            record["vec"] = bytes(known[record["digest"]])
        elif error is not None:
            record["error"] = f"column {column.name!r} holds an error ({error})"
        elif stored is not None:
            to_embed.append({ROWID: record[ROWID], column.name: column.col_type.from_sql(stored), "_record": record})
    if to_embed:
        call = FunctionCall(index.function, [ColumnRef(column)], {})
        target = Target(name="__vec", expr=call, col_type=_AnyValue(), save_media=False)
        with session.cache_lease() as lease:
            Pipeline(lease, session.media_store, session.settings.compute_workers, presigner=session.presigner).run(
                to_embed, [target]
            )
        for row in to_embed:
            row["_record"].update(_vector_value(row.get("__vec"), index))
    _write(session, owner, column, index, records)
    return sum(1 for r in records if r["error"] is not None)


def _write(session: Session, owner: TableMeta, column: Column, index: IndexMeta, records: list[dict[str, Any]]) -> None:
    """Store `records` under the family's lock, for the images of `owner` that still hold the value embedded."""
    vectors = index.vectors
    data, history = owner.sql_table(), owner.history_table()
    rowids = [r[ROWID] for r in records]
    with session.engine.begin() as conn:
        versions.lock_family(conn, owner.root_id)
        if indexes.get_index(conn, index.id) is None:
            return  # dropped meanwhile
        now: dict[tuple[int, int], str] = {}
        for table in (data, history):
            query = sa.select(table.c[ROWID], table.c[V_MIN], *_value_columns(table, column))
            for row in conn.execute(query.where(table.c[ROWID].in_(rowids))):
                now[(row[0], row[1])] = _digest(row[2:])
        keep = [r for r in records if now.get((r[ROWID], r[V_MIN])) == r["digest"]]
        if not keep:
            return
        if index.backend == "pgvector":
            for record in keep:
                record["emb"] = None if record["vec"] is None else np.frombuffer(record["vec"], dtype="<f4")
        by_version: dict[int, list[int]] = {}
        for record in keep:
            by_version.setdefault(record[V_MIN], []).append(record[ROWID])
        for version, ids in by_version.items():  # vectors another process wrote meanwhile (records: one batch)
            conn.execute(vectors.delete().where(vectors.c[V_MIN] == version, vectors.c[ROWID].in_(ids)))
        conn.execute(vectors.insert(), keep)


class _AnyValue(ts.ColumnType):
    """The pipeline's check of a target's values: embeddings are checked by :func:`_vector_value`."""

    name = "Any"

    def validate(self, value: Any) -> Any:
        return value


def _vector_value(value: Any, index: IndexMeta) -> dict[str, Any]:
    if isinstance(value, CellError):
        return {"error": f"{value.errortype}: {value.errormsg}"}
    if value is None:
        return {"error": f"{index.function.name} returned None"}
    vector = np.asarray(value, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(vector))
    if vector.size == 0 or not np.isfinite(norm) or norm == 0:
        return {"error": f"{index.function.name} returned an empty or zero vector"}
    return {"vec": (vector / norm).astype("<f4").tobytes()}


# -- search -------------------------------------------------------------------------------------


def vector_structure(session: Session, meta: TableMeta, index: IndexMeta) -> index_search.Structure:
    """The search structure of `index` for the images `meta` reads, with every vector computed."""
    return index_search.structure(session, meta, index, lambda: catch_up(session, meta, index))


class IndexScorer:
    """Scores of rows against one query embedding, from an index's stored vectors (binds Similarity nodes).

    `key` names the row field the vectors are keyed by: `_rowid`, or `_base_rowid` for a view's
    index on a column of its base.
    """

    def __init__(self, vectors: index_search.Structure, query: np.ndarray, key: str = ROWID) -> None:
        self.vectors = vectors
        self.query = query
        self.key = key

    def __len__(self) -> int:
        return len(self.vectors)

    def scores(self, rowids: Sequence[int]) -> list[float | None]:
        return self.vectors.scores(rowids, self.query)

    def top(self, k: int) -> list[int]:
        """Row ids of the `k` best rows, best first; an approximate structure's candidates ranked exactly."""
        if self.vectors.exact:
            return self.vectors.top(self.query, k)
        candidates = self.vectors.top(self.query, 2 * k + OVERSAMPLE)
        scores = self.vectors.scores(candidates, self.query)
        ranked = sorted(
            (pair for pair in zip(candidates, scores, strict=True) if pair[1] is not None), key=lambda p: -p[1]
        )
        return [rowid for rowid, _ in ranked[:k]]


def embed_query(index: IndexMeta, query: Any) -> np.ndarray:
    """The unit-length embedding of a query value, by the index's own function.

    Raises:
        ExprError: the function fails on the query or gives no vector.
    """
    function = index.function
    media = [t for t in function.param_types.values() if t is not None and t.is_media]
    if media and media[0] == ts.Image and isinstance(query, str | os.PathLike):
        query = PIL.Image.open(query)  # an image index is searched by an image: a local path is opened
    try:
        value = function.fn([query])[0] if function.batch_size else function.fn(query)
    except Exception as exc:
        raise ExprError(f"cannot embed the similarity query with {function.name}: {exc}") from exc
    vector = np.asarray(value, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(vector)) if vector.size else 0.0
    if not norm or not np.isfinite(norm):
        raise ExprError(f"{function.name} gave an empty or zero vector for the similarity query")
    return vector / norm


def bind(
    session: Session,
    meta: TableMeta,
    exprs: Sequence[Expr],
    order: Sequence[Any],
    limit: int | None,
    sql: TableSql,
    sql_where: Any,
    python_filter: bool,
) -> list[int] | None:
    """Bind the query's similarity nodes to their indexes; the candidate row ids of an index top-k query.

    When the query is `order_by(<similarity>, asc=False).limit(k)` (with at most a filter that runs in
    SQL), only the best candidates need reading: their row ids are returned. Otherwise None (every
    matching row is read and scored from the stored vectors).

    Raises:
        ExprError: the column has no embedding index, or the query value cannot be embedded.
    """
    nodes = [node for expr in exprs for node in expr.walk() if isinstance(node, Similarity)]
    scorers: dict[int, IndexScorer] = {}
    for node in nodes:
        column = node.ref.column
        seen = meta.columns.get(column.name)
        if column.owner_id not in meta.owner_ids() or seen is None or seen.stem != column.stem:
            raise ExprError(f"similarity() over {node.ref!r}: query the table or view whose index it is")
        with read_only(session.engine) as conn:
            try:
                index = indexes.find_index(conn, meta, name=node.index, column=column.name)
            except NotFoundError as exc:
                raise ExprError(f"{node!r}: {exc}") from exc
        key = IndexedImages(meta, column).key
        scorer = IndexScorer(vector_structure(session, meta, index), embed_query(index, node.query), key)
        node.bind(scorer)
        scorers[id(node)] = scorer
    first = order[0] if order else None
    if first is None or len(order) != 1 or first.asc or limit is None or python_filter:
        return None
    if not isinstance(first.expr, Similarity) or id(first.expr) not in scorers:
        return None
    return _top_candidates(session, sql, scorers[id(first.expr)], limit, sql_where)


def _top_candidates(session: Session, sql: TableSql, scorer: IndexScorer, limit: int, sql_where: Any) -> list[int]:
    """Row ids of rows among which the `limit` best are (a view's index on a base column: every row of the best)."""
    total = len(scorer)
    direct = sql_where is None and scorer.key == ROWID
    k = limit if sql_where is None else limit * 4
    while True:
        candidates = scorer.top(k)
        if direct:
            return candidates
        with read_only(session.engine) as conn:
            query = sa.select(sql.table.c[ROWID]).select_from(sql.from_clause())
            if sql_where is not None:
                query = query.where(sql_where)
            matching = [r[0] for r in conn.execute(query.where(sql.table.c[scorer.key].in_(candidates)))]
        if len(matching) >= limit or k >= total:
            return matching
        k *= 4
