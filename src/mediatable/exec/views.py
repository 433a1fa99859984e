"""Views with iterators: one base row -> many view rows (video frames, audio chunks, document pages)."""

from __future__ import annotations

import collections
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from mediatable.catalog.model import TableMeta
from mediatable.errors import ComputeError, InvalidArgument
from mediatable.exec import compute
from mediatable.exec.rows import BASE_ROWID, ROWID, TableSql
from mediatable.exec.status import UpdateStatus
from mediatable.io.cache import RemoteObject
from mediatable.io.urls import redact_url
from mediatable.iterators import AudioChunkIterator, DocumentPageIterator, FrameIterator
from mediatable.session import Session

ITERATORS: dict[str, Any] = {
    "frames": FrameIterator,
    "audio_chunks": AudioChunkIterator,
    "document_pages": DocumentPageIterator,
}
log = logging.getLogger(__name__)


def check_iterator_args(name: str, kwargs: dict[str, Any]) -> None:
    """Check an iterator's arguments before a view is created: the iterator validates them without a file.

    Raises:
        InvalidArgument: an argument is unknown or out of range (the message says which).
    """
    try:
        ITERATORS[name]("", **kwargs)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{name}(): {exc}") from exc


def propagate(
    session: Session,
    view: TableMeta,
    lease: Any,
    base_rows: list[dict[str, Any]],
    on_error: str | None,
    conn: sa.Connection,
    version: int,
) -> UpdateStatus:
    """Run the view's iterator over new base rows, compute the view's own columns, insert the view rows.

    The rows are written on `conn` (the transaction of the change that brought the base rows) at `version`.

    Source files are prefetched concurrently; a base row whose file cannot be read or iterated
    contributes no rows and counts as one error (or aborts, with `on_error='abort'`).
    """
    spec = view.iterator or {}
    iterator_cls = ITERATORS[spec["name"]]
    source, kwargs = spec["source"], spec.get("kwargs", {})
    schema = iterator_cls.output_schema
    sources = [(row, row.get(source)) for row in base_rows if isinstance(row.get(source), str)]
    urls = [u for _, u in sources]
    # Iterators that read parts of a file (sampled frames) get large objects as RemoteObjects.
    ranged = set(urls) if iterator_cls.reads_ranges(**kwargs) else set()
    view_rows: list[dict[str, Any]] = []
    failed = 0
    workers = session.settings.compute_workers
    # The iterator decodes here; its media (frames, chunks) is encoded and written on worker threads,
    # at most 2 x workers items in flight, so a long video never piles up decoded frames.
    with ThreadPoolExecutor(workers, thread_name_prefix="mediatable-encode") as encoders:
        for (base_row, url), local in zip(sources, lease.get_many(urls, ranged=ranged), strict=True):
            saving: collections.deque[tuple[dict[str, Any], str, Future[str]]] = collections.deque()
            try:
                if isinstance(local, BaseException):
                    raise local
                produced = []
                for item in iterator_cls(local if isinstance(local, RemoteObject) else str(local), **kwargs):
                    row = {k: v for k, v in base_row.items() if k != ROWID}
                    row[BASE_ROWID] = base_row[ROWID]
                    for name, col_type in schema.items():
                        value = item[name]
                        row[name] = value
                        if col_type.is_media and value is not None:
                            saving.append((row, name, encoders.submit(session.media_store.save, value, view.id, name)))
                    produced.append(row)
                    while len(saving) > 2 * workers:
                        saved_row, saved_name, future = saving.popleft()
                        saved_row[saved_name] = future.result()
                while saving:
                    saved_row, saved_name, future = saving.popleft()
                    saved_row[saved_name] = future.result()
            except Exception as exc:
                for _, _, future in saving:
                    future.cancel()
                reason = str(exc).replace(str(local), redact_url(url))  # name the URL, not the cache file
                message = f"{spec['name']} over {view.base.path}.{source} (row {base_row[ROWID]}): {reason}"
                if on_error == "abort":
                    raise ComputeError(message, table=view.path, column=source, row=base_row[ROWID]) from exc
                log.warning("view %s: %s", view.path, message)
                failed += 1
                continue
            view_rows.extend(produced)
    computed = compute.computed_columns(view)
    compute.compute(session, view, lease, view_rows, computed, on_error)
    TableSql(view).insert(conn, view_rows, list(view.own_columns.values()), version)
    status = compute.count(UpdateStatus(operation="inserted"), view_rows, computed, view.path)
    if failed:
        status.num_excs += failed
        status.cols_with_excs = sorted({*status.cols_with_excs, f"{view.path} (iterator)"})
    return status
