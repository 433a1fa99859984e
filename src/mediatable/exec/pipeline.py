"""The execution pipeline: prefetch media -> compute in a worker pool -> hand values back in order.

`exec/` is the only place that schedules work. One :class:`Pipeline` run evaluates a list of
targets (column, expression) over a list of rows:

1. prefetch: every media URL the expressions read is requested from the file cache through
   `lease.get_many` (bounded concurrency, in row order) on a background thread; a column read only
   by functions that need part of a file (`Function.ranged`: video metadata, `extract_frame`, ...)
   is opened for ranged reads instead, so a large object is not downloaded whole (its size decides);
2. compute: rows are cut into chunks; a chunk goes to the thread pool as soon as its media is
   local, so downloads of later rows overlap computation of earlier ones; function calls that
   belong in worker processes go there from the chunk's thread (:mod:`~mediatable.exec.workers`);
   light work runs on the calling thread, and targets that only read image headers take a pass of
   their own (:mod:`~mediatable.exec.headers`);
3. results are written into the row dicts in place (chained targets read earlier targets' values);
   generated media is encoded and written where it was computed, through the
   :class:`~mediatable.io.media_store.MediaStore`.

A failure is a :class:`~mediatable.exprs.CellError` in one cell; `on_error='abort'` turns the first
one into a :class:`~mediatable.errors.ComputeError` and stops.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import queue
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from mediatable import types as ts
from mediatable.errors import ComputeError, DataError, MediaError, MediaNotFound, PresignError
from mediatable.exec.headers import HeaderReads, header_reads
from mediatable.exec.isolation import RowImages, SaveSpec, Stored, is_generated, open_local, save_generated
from mediatable.exec.workers import CallRouter, WorkerProcesses
from mediatable.exprs import CellError, ColumnProperty, ColumnRef, Expr, FunctionCall
from mediatable.exprs.presign import PresignedUrl
from mediatable.io.cache import RemoteObject
from mediatable.io.media_store import ImageEncoding, MediaStore
from mediatable.io.uploads import UploadBatch
from mediatable.io.urls import redact_url


class Lease(Protocol):
    """The part of a file-cache lease the pipeline uses."""

    @property
    def pin_capacity(self) -> int: ...

    @property
    def handed_out_bytes(self) -> int: ...

    def get(self, url: str) -> Path: ...

    def get_ranged(self, url: str) -> Path | RemoteObject: ...

    def get_many(
        self, urls: Sequence[str], *, ranged: Collection[str] = ()
    ) -> Iterator[Path | RemoteObject | MediaError]: ...


class Presigner(Protocol):
    """The part of :class:`~mediatable.io.presign.Presigner` the pipeline uses."""

    def presign(self, urls: Sequence[str], expiration_seconds: int) -> list[str | MediaError]: ...


class Uploads(Protocol):
    """The part of :class:`~mediatable.io.uploads.Uploads` the pipeline uses."""

    def batch(self) -> UploadBatch: ...


@dataclasses.dataclass
class Target:
    """One value to compute per row: `expr`, stored as column `name` of type `col_type`."""

    name: str
    expr: Expr
    col_type: ts.ColumnType
    table_id: int = 0
    on_error: str = "ignore"
    table_path: str = ""
    save_media: bool = True
    destination: str | None = None  # generated media goes there (uploaded), else to the media store
    encoding: ImageEncoding | None = None  # of generated images; None: the media store's default


class MediaAccess:
    """Turns media URLs into local files through a cache lease; remembers failed prefetches."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.failed: dict[str, MediaError] = {}
        # What the prefetch stage made ready (pinned by the lease): local files, or large objects
        # opened for ranged reads.
        self.prefetched: dict[str, Path | RemoteObject] = {}
        self.urls_of_paths: dict[str, str] = {}  # local file -> URL, to word errors for users (redacted then)

    def path(self, url: str, checked: bool = True) -> Path:
        """The local file of `url`; without `checked`, a prefetched file is not checked to still exist
        (the caller opens it and asks again, :meth:`refetch`, if it is gone)."""
        error = self.failed.get(url)
        if error is not None:
            raise error
        local = self.prefetched.get(url)
        if not isinstance(local, Path) or (checked and not os.path.exists(local)):
            local = self.lease.get(url)  # also a large object opened for ranges, when a whole file is asked for
        self.urls_of_paths[str(local)] = url
        return local

    def ranged(self, url: str, checked: bool = True) -> Path | RemoteObject:
        """A local file, or a large object to read by ranges (see `Lease.get_ranged`)."""
        error = self.failed.get(url)
        if error is not None:
            raise error
        got = self.prefetched.get(url)
        if got is None or (checked and isinstance(got, Path) and not got.exists()):
            got = self.lease.get_ranged(url)
        if isinstance(got, Path):
            self.urls_of_paths[str(got)] = url
        return got

    def reword(self, error: CellError) -> CellError:
        """Name the media URL (redacted), not the cache file, in an error raised by a function reading it."""
        message = error.errormsg
        for local, url in self.urls_of_paths.items():
            if local in message:
                message = message.replace(local, redact_url(url))
        return error if message == error.errormsg else error.reworded(message)

    def open(self, url: str, col_type: ts.ColumnType, ranged: bool = False, opened: list[Any] | None = None) -> Any:
        """What a function gets for a media argument: a PIL image, or a local path; with `ranged`, for
        a large remote object, a seekable file over its blocks (or an image opened from one).

        Images and remote files are appended to `opened` (the caller closes them, last first).
        """
        local = self.ranged if ranged else self.path
        if not isinstance(col_type, ts.ImageType):
            return self._source(local(url), opened)
        # A prefetched file is pinned, so it is opened without a stat first (a hot path: a header-only
        # column opens thousands per second); if it is gone all the same, it is fetched again.
        got = local(url, checked=False)
        try:
            image = open_local(self._source(got, opened), url, col_type)
        except MediaNotFound:
            if not isinstance(got, Path) or got.exists():
                raise
            self.prefetched.pop(url, None)
            image = open_local(self._source(local(url), opened), url, col_type)
        if opened is not None:
            opened.append(image)
        return image

    @staticmethod
    def _source(got: Path | RemoteObject, opened: list[Any] | None) -> Any:
        """The path of a local file, or a seekable file opened over a large remote object (kept in `opened`)."""
        if not isinstance(got, RemoteObject):
            return str(got)
        source = got.open()
        if opened is not None:
            opened.append(source)
        return source


class RowEnv:
    """One row's values during evaluation (implements :class:`~mediatable.exprs.base.EvalEnv`)."""

    __slots__ = ("images", "media", "opened", "presigner", "root", "router", "save", "values")

    def __init__(
        self, values: dict[str, Any], media: MediaAccess, router: CallRouter, presigner: Presigner | None = None
    ) -> None:
        self.values = values
        self.media = media
        self.router = router
        self.presigner = presigner
        self.opened: list[Any] = []
        self.images = RowImages()  # every target of the row shares them: one decode per image
        self.root: Expr | None = None  # the expression of the target being computed
        self.save: SaveSpec | None = None  # how its generated media is saved

    def column_value(self, column: Any) -> Any:
        return self.values.get(column.name)

    def open_media(self, url: str, col_type: ts.ColumnType, ranged: bool = False) -> Any:
        if not isinstance(col_type, ts.ImageType):
            return self.media.open(url, col_type, ranged, self.opened)
        return self.images.get(url, ranged, lambda: self.media.open(url, col_type, ranged, self.opened))

    def local_path(self, url: str) -> str:
        return str(self.media.path(url))

    def presign(self, urls: Sequence[str], expiration_seconds: int) -> list[str | MediaError]:
        if self.presigner is None:
            return [PresignError("presigning needs a session's object stores", url=redact_url(u)) for u in urls]
        return self.presigner.presign(urls, expiration_seconds)

    def run_call(self, call: Any, envs: Sequence[Any], here: Callable[[Sequence[Any]], list[Any]]) -> list[Any]:
        return self.router.run_call(call, envs, here, self.save if call is self.root else None)

    def close(self) -> None:
        for opened in reversed(self.opened):  # an image before the remote file it reads
            opened.close()
        self.opened.clear()
        self.images.clear()


def preflight(rows: Sequence[dict[str, Any]], outputs: Sequence[tuple[str, Expr]]) -> None:
    """Raise, before any work, what the stored inputs already show cannot work for a whole column.

    Today: a presigned URL whose expiration exceeds the maximum of a provider the source column holds
    URLs of (S3 and GCS: 7 days).

    Args:
        rows: the rows about to be computed (their stored values).
        outputs: (column or output name, expression) pairs, for the messages.

    Raises:
        InvalidArgument: names the column, the provider's maximum and one such URL (redacted).
    """
    for name, expr in outputs:
        for node in expr.walk():
            if isinstance(node, PresignedUrl) and isinstance(node.source, ColumnRef):
                source = node.source.column.name
                node.check_urls((row.get(source) for row in rows), name)


def media_inputs(exprs: Sequence[Expr], computed_here: set[str]) -> list[str]:
    """Names of the stored media columns whose files evaluating `exprs` will read."""
    return list(_media_readers(exprs, computed_here))


def ranged_inputs(exprs: Sequence[Expr], computed_here: set[str]) -> set[str]:
    """The media inputs read only by functions that need part of a file (`Function.ranged`)."""
    return {name for name, ranged in _media_readers(exprs, computed_here).items() if ranged}


def _media_readers(exprs: Sequence[Expr], computed_here: set[str]) -> dict[str, bool]:
    """Stored media columns read by `exprs`, in order -> whether every reader reads by ranges."""
    found: dict[str, bool] = {}
    for expr in exprs:
        for node in expr.walk():
            readers = []
            ranged = False
            if isinstance(node, FunctionCall):
                readers = [a for a in node.children() if isinstance(a, ColumnRef)]
                ranged = node.function.ranged
            elif isinstance(node, ColumnProperty) and node.prop == "localpath":
                readers = [node.ref]
            for ref in readers:
                name = ref.column.name
                if ref.col_type.is_media and name not in computed_here:
                    found[name] = found.get(name, True) and ranged
    return found


class Pipeline:
    """Runs targets over rows with overlapped prefetch and compute. One per operation.

    Examples:
        See :meth:`run`; tables call it for inserts, computed columns and queries.
    """

    def __init__(
        self,
        lease: Lease,
        media_store: MediaStore,
        workers: int,
        progress: Callable[[int], None] | None = None,
        *,
        presigner: Presigner | None = None,
        uploads: Uploads | None = None,
        processes: WorkerProcesses | None = None,
    ) -> None:
        self.media = MediaAccess(lease)
        self.presigner = presigner
        self.uploads = uploads
        self._batch: UploadBatch | None = None
        self.media_store = media_store
        self.workers = max(1, workers)
        self.progress = progress
        self.processes = processes  # None: every call runs on threads

    def run(self, rows: list[dict[str, Any]], targets: Sequence[Target], chunk_size: int = 0) -> None:
        """Compute every target for every row, in place (`row[target.name] = value or CellError`).

        Generated media of targets with a destination is uploaded while the run goes on (on the
        transfer stage), and the cells get the objects' URLs when the run ends; until then they hold
        the local staging file, which targets computed from them read.

        Args:
            rows: the rows (dicts by column name); results are written into them.
            targets: what to compute, in order (later targets may read earlier ones).
            chunk_size: rows per chunk; default sized from the work (see :func:`chunk_rows`).

        Raises:
            ComputeError: a target with `on_error='abort'` failed; the message names column and row.
        """
        if not rows or not targets:
            return
        uploading = [t for t in targets if t.destination and t.col_type.is_media and t.save_media]
        if uploading and self.uploads is not None:
            self._batch = self.uploads.batch()
        batch = self._batch
        try:
            self._run(rows, targets, chunk_size)
        except BaseException:
            if batch is not None:
                batch.settle()  # wait for what started and clean up; the failure is what gets raised
            raise
        finally:
            self._batch = None
        if batch is not None:
            self._settle(batch, rows, uploading)

    def _run(self, rows: list[dict[str, Any]], targets: Sequence[Target], chunk_size: int = 0) -> None:
        computed_here = {t.name for t in targets}
        inputs = media_inputs([t.expr for t in targets], computed_here)
        ranged = ranged_inputs([t.expr for t in targets], computed_here)
        # Light work (header reads, arithmetic) holds the GIL: more threads only add switching.
        light = all(_is_light(t.expr) for t in targets)
        headers = header_reads([t.expr for t in targets], computed_here) if light else None
        workers = 1 if light else self.workers
        size = chunk_size or chunk_rows(targets, light)
        router = CallRouter(self.processes, workers, len(rows))
        urls_per_row = [[u for n in inputs if isinstance(u := row.get(n), str)] for row in rows]
        if any(urls_per_row):
            whole = {u for row in rows for n in inputs if n not in ranged and isinstance(u := row.get(n), str)}
            ranged_urls = {u for row in rows for n in ranged if isinstance(u := row.get(n), str)} - whole
            byte_cap = max(1, self.media.lease.pin_capacity // (2 * (workers + 1)))
            ready: Iterator[range] = self._ready_chunks(urls_per_row, ranged_urls, size, byte_cap)
        else:
            ready = (range(start, min(start + size, len(rows))) for start in range(0, len(rows), size))
        if light:
            # All on this thread: a chunk's files are taken from the cache (downloads still run ahead
            # in it) and computed in turn. Other threads would only add GIL hand-offs.
            for chunk in ready:
                if headers is not None:
                    self._read_headers(rows, chunk, targets, headers)
                else:
                    self._compute_chunk(rows, chunk, targets, router)
            return
        chunks: queue.Queue[range | BaseException | None] = queue.Queue()
        stop = threading.Event()
        # Backpressure: the prefetch stage takes a chunk's files from the cache only when a worker is free
        # for it. Downloads still run ahead inside the cache (get_many's window keeps those files pinned);
        # the files handed out are at most `workers` chunks, each under its share of the lease's pin
        # capacity, so none is unpinned (and evictable) before it is used.
        ahead = threading.Semaphore(workers)
        thread = threading.Thread(
            target=self._prefetch, args=(ready, chunks, stop, ahead), name="mediatable-prefetch", daemon=True
        )
        thread.start()
        pending: collections.deque[Future[None]] = collections.deque()
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="mediatable-compute") as pool:
                while (chunk := chunks.get()) is not None:
                    if isinstance(chunk, BaseException):
                        raise chunk
                    future = pool.submit(self._compute_chunk, rows, chunk, targets, router)
                    future.add_done_callback(lambda _: ahead.release())
                    pending.append(future)
                    while len(pending) >= 2 * workers:
                        pending.popleft().result()
                while pending:
                    pending.popleft().result()
        finally:
            stop.set()
            for future in pending:
                future.cancel()
            thread.join(timeout=60)

    def _ready_chunks(
        self, urls_per_row: list[list[str]], ranged: set[str], size: int, byte_cap: int
    ) -> Iterator[range]:
        """Chunks of rows whose files the cache has handed out (local files in `media.prefetched`, errors
        in `media.failed`), in order.

        A chunk ends at `size` rows or once the cached files it was handed reach `byte_cap` bytes (at
        least one row): they stay pinned while it is computed.
        """
        flat = [url for urls in urls_per_row for url in urls]
        failed, prefetched = self.media.failed, self.media.prefetched
        lease = self.media.lease
        results = iter(lease.get_many(flat, ranged=ranged))
        position = row = 0
        while row < len(urls_per_row):
            first, start = row, lease.handed_out_bytes
            while (
                row < len(urls_per_row)
                and row - first < size
                and (lease.handed_out_bytes - start < byte_cap or row == first)
            ):
                for _ in urls_per_row[row]:
                    result = next(results)
                    if isinstance(result, BaseException):
                        failed[flat[position]] = result
                    else:
                        prefetched[flat[position]] = result
                    position += 1
                row += 1
            yield range(first, row)

    @staticmethod
    def _prefetch(
        ready: Iterator[range],
        chunks: queue.Queue[range | BaseException | None],
        stop: threading.Event,
        ahead: threading.Semaphore,
    ) -> None:
        """Hand the chunks `ready` makes to the compute loop, each once a worker is free for it."""
        try:
            while True:
                while not ahead.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                chunk = next(ready, None)
                if chunk is None or stop.is_set():
                    return
                chunks.put(chunk)
        except BaseException as exc:  # surfaced in run(); never lost in a thread
            chunks.put(exc)
        finally:
            chunks.put(None)

    def _compute_chunk(
        self, rows: list[dict[str, Any]], chunk: range, targets: Sequence[Target], router: CallRouter
    ) -> None:
        envs = [RowEnv(rows[i], self.media, router, self.presigner) for i in chunk]
        try:
            for target in targets:
                save = self._save_spec(target)
                for env in envs:
                    env.root, env.save = target.expr, save
                self._store(target, save, [env.values for env in envs], target.expr.eval_batch(envs), chunk)
        finally:
            for env in envs:
                env.close()
        if self.progress is not None:
            self.progress(len(chunk))

    def _read_headers(
        self, rows: list[dict[str, Any]], chunk: range, targets: Sequence[Target], headers: HeaderReads
    ) -> None:
        """:meth:`_compute_chunk` for targets that only read image headers (see :mod:`~mediatable.exec.headers`)."""
        chunk_rows = rows[chunk.start : chunk.stop]
        for target, values in zip(targets, headers.read(chunk_rows, self.media), strict=True):
            self._store(target, self._save_spec(target), chunk_rows, values, chunk)
        if self.progress is not None:
            self.progress(len(chunk))

    def _store(
        self, target: Target, save: SaveSpec | None, rows: list[dict[str, Any]], values: list[Any], chunk: range
    ) -> None:
        """Put the target's values (finished: saved, checked) into the chunk's rows; abort at an error if asked."""
        finished = None
        if save is None and not target.col_type.is_media:  # plain values: checked a column at a time
            finished = target.col_type.validate_many(values)
        if finished is None:
            finished = [self._finish(target, save, value) for value in values]
        name, abort = target.name, target.on_error == "abort"
        for position, (row, value) in enumerate(zip(rows, finished, strict=True)):
            row[name] = value
            if abort and isinstance(value, CellError):
                raise _failed(target, row, chunk[position], value)

    def _save_spec(self, target: Target) -> SaveSpec | None:
        """How the target's generated media is saved: to the media store, or staged for its destination."""
        if not (target.save_media and target.col_type.is_media):
            return None
        staging = bool(target.destination) and self._batch is not None
        return SaveSpec(target.table_id, target.name, target.col_type, target.encoding, staging)

    def _finish(self, target: Target, save: SaveSpec | None, value: Any) -> Any:
        """Save generated media (unless a worker process did) and check the value against the column type."""
        if isinstance(value, Stored):  # saved by a worker process
            if value.staged:
                return self._stage(target, value.url)
            value = value.url
        elif save is not None and save.staging and is_generated(value):
            return self._stage(target, value)
        elif save is not None:
            value = save_generated(value, save, self.media_store)
        if isinstance(value, CellError):
            return self.media.reword(value)
        if value is None or (target.col_type.is_media and not target.save_media):
            return value
        try:
            return target.col_type.validate(value)
        except (DataError, ValueError) as exc:
            return CellError.from_exception(exc, f"result of {target.name}: ")

    def _stage(self, target: Target, value: Any) -> Any:
        """Start the upload of generated media to the target's destination: the staging file's URL until the
        run settles, or the cell's error."""
        assert self._batch is not None and target.destination is not None
        try:
            return self._batch.add(value, target.destination, target.encoding)
        except (DataError, OSError, ValueError) as exc:
            return CellError.from_exception(exc, f"result of {target.name}: ")

    def _settle(self, batch: UploadBatch, rows: list[dict[str, Any]], targets: Sequence[Target]) -> None:
        """Wait for the run's uploads and put each object's URL (or its upload's error) in its cells."""
        results = batch.settle()
        for target in targets:
            for index, row in enumerate(rows):
                staged = row.get(target.name)
                if not batch.is_staged(staged):
                    continue
                result = results[staged]
                if isinstance(result, str):
                    row[target.name] = result
                    continue
                error = CellError.from_exception(result, f"upload of {target.name}: ")
                row[target.name] = error
                if target.on_error == "abort":
                    raise _failed(target, row, index, error)


def _failed(target: Target, values: dict[str, Any], position: int, error: CellError) -> ComputeError:
    """The error that aborts an operation at a failed cell: names the column and the row."""
    row_id = values.get("_rowid")
    where = f"row {row_id}" if row_id is not None else f"input row {position}"
    failure = ComputeError(
        f"computing {target.table_path}.{target.name} failed at {where}: {error.errortype}: {error.errormsg}",
        table=target.table_path,
        column=target.name,
        row=row_id if row_id is not None else position,
    )
    failure.__cause__ = error.exc
    return failure


# Rows per chunk of light work: per-chunk costs vanish, the GIL is held anyway; a chunk's files stay
# open until it ends, and header reads slow down by a quarter with 256 open at once (not with 64).
LIGHT_CHUNK = 64
HEAVY_CHUNK = 8  # rows per chunk of decode-heavy work: enough chunks to keep every worker busy


def chunk_rows(targets: Sequence[Target], light: bool) -> int:
    """Rows per chunk for `targets`: large for light work, small for heavy work, at least any batch size.

    Examples:
        >>> chunk_rows([], light=True), chunk_rows([], light=False)
        (64, 8)
    """
    batch = max([_batch_size(t.expr) for t in targets] + [0])
    return max(batch, LIGHT_CHUNK if light else HEAVY_CHUNK)


def _is_light(expr: Expr) -> bool:
    return all(node.function.light for node in expr.walk() if isinstance(node, FunctionCall))


def _batch_size(expr: Expr) -> int:
    sizes = [node.function.batch_size for node in expr.walk() if isinstance(node, FunctionCall)]
    return max([s for s in sizes if s] or [0])
