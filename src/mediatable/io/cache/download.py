"""Download and publish: one transfer per URL at a time, streamed to a temp file, renamed, then indexed.

A download streams into ``tmp/<name>.<pid>-<id>.part`` (same file system, so the final rename is
atomic; one folder, so finding leftovers never walks the whole cache) under an exclusive ``flock``,
has its length checked (:mod:`mediatable.io.fetch`), is renamed to its final name and only then
gets its index row. The entry lock of the URL is held from before the transfer until that row is
committed, so other processes wait and then find the entry.

What is downloaded is a :class:`Source`: its index key, its file's extension and how to fetch it.
A whole object is the usual one (:class:`WholeObject`); blocks of large objects are others
(:mod:`mediatable.io.cache.ranged`). A source may also decline to produce its entry (a large object
opened for ranged reads): it then returns a :class:`Declined` instead of the object's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import BinaryIO, Protocol

from mediatable.errors import CacheError, MediaError
from mediatable.io import fetch
from mediatable.io.cache.core import Core
from mediatable.io.cache.entries import Entry, digest, file_name, same_version
from mediatable.io.cache.holding import Holding
from mediatable.io.cache.info import human_size
from mediatable.io.objects import ObjectInfo
from mediatable.io.transfer import TransferStage
from mediatable.io.urls import MediaUrl, redact_url

__all__ = ["Declined", "Downloader", "Outcome", "Sink", "Source", "WholeObject"]

log = logging.getLogger("mediatable.io.cache")

# Picks the file one attempt writes to, once the size of what it writes is known.
Sink = Callable[[ObjectInfo], Awaitable[BinaryIO]]


class Declined:
    """A source's answer when it chose not to produce its entry; ``then`` runs still holding its entry lock.

    Attributes:
        info: the object's metadata (its version, for ranged reads).
        then: what to do before the entry lock is released (e.g. publish a first block), or None.
    """

    __slots__ = ("info", "then")

    def __init__(self, info: ObjectInfo, then: Callable[[], Awaitable[None]] | None = None) -> None:
        self.info, self.then = info, then


class Source(Protocol):
    """One thing to download into one cache entry.

    Attributes:
        key: the entry's key in the index (the normalized URL for a whole object).
        url: the object it comes from (retries, error messages, the progress of its lease).
        extension: the entry file's extension.
    """

    key: str
    url: MediaUrl
    extension: str

    async def fetch(self, stage: TransferStage, sink: Sink, on_bytes: Callable[[int], None]) -> ObjectInfo | Declined:
        """Write the entry's bytes into ``sink(info)`` (retrying on ``stage``); the metadata to record."""
        ...


class WholeObject:
    """The whole object at a URL, with one GET (:func:`mediatable.io.fetch.download_attempt`)."""

    def __init__(self, stores: fetch.Stores, url: MediaUrl) -> None:
        self.stores, self.url, self.key, self.extension = stores, url, url.url, url.extension

    async def fetch(self, stage: TransferStage, sink: Sink, on_bytes: Callable[[int], None]) -> ObjectInfo:
        return await stage.run(self.url, lambda: fetch.download_attempt(self.stores, self.url, sink, on_bytes))


class Outcome:
    """The result of one download: a cached file, a lease-private one (not cached), or a declined source."""

    __slots__ = ("cached", "declined", "path", "size")

    def __init__(self, path: Path | None, cached: bool, size: int, declined: ObjectInfo | None = None) -> None:
        self.path, self.cached, self.size, self.declined = path, cached, size, declined


class _Download:
    """Where the body of one download goes, decided once the size is known (see `Downloader._sink`)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.file: BinaryIO | None = None
        self.size = -1
        self.temp: str | None = None  # cached download: the .part file (relative), published by rename
        self.reserved = False  # holds `size` bytes of the cache's reserved space
        self.private: Path | None = None  # uncached download: the lease's own file

    def discard_file(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None
        for path in (None if self.temp is None else f"{self.root}/{self.temp}", self.private):
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self.temp = self.private = None


class Downloader:
    """Turns a URL into a local file for a lease: a hit, a shared download, or a download of its own.

    Args:
        core: the cache's shared state.
        whole: the :class:`Source` of a whole object at a URL, given the metadata a validation
            HEAD returned (default :class:`WholeObject`).
    """

    def __init__(self, core: Core, whole: Callable[[MediaUrl, ObjectInfo | None], Source] | None = None) -> None:
        self._core = core
        self._whole = whole or (lambda mu, fresh: WholeObject(core.stores, mu))
        self._inflight: dict[str, Future[Outcome]] = {}
        self._inflight_lock = threading.Lock()
        self._temp_ids = itertools.count()  # unique temp names without asking the OS for randomness
        self._known_dirs: set[str] = set()

    async def obtain(
        self,
        mu: MediaUrl,
        holding: Holding,
        on_bytes: Callable[[int], None] | None = None,
        prefetch: bool = False,
        missing: bool = False,
    ) -> Path:
        """The local file of a remote URL: from the cache, or downloaded (once per URL at a time).

        Runs on the transfer stage's loop. ``prefetch``: fetched ahead for ``get_many``; pinned
        outside the lease's pin window until it is handed to the consumer. ``missing``: the caller
        just looked in the index.
        """
        outcome = await self.obtain_outcome(mu, holding, None, on_bytes, prefetch, missing)
        assert outcome.path is not None  # a whole object is never declined
        return outcome.path

    async def obtain_outcome(
        self,
        mu: MediaUrl,
        holding: Holding,
        source: Callable[[MediaUrl, ObjectInfo | None], Source] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        prefetch: bool = False,
        missing: bool = False,
    ) -> Outcome:
        """:meth:`obtain`, downloading with ``source`` (default the whole object), which may decline."""
        core = self._core
        url = mu.url
        fresh: ObjectInfo | None = None
        if core.validate and not holding.validated(url):
            fresh = await core.stage.run(mu, lambda: core.stores.head_async(mu))
            holding.mark_validated(url)
        private = holding.private(url)
        if private is not None and fresh is None:
            return Outcome(private, False, 0)
        if not (missing and fresh is None):
            entry = core.cached(url, fresh)
            if entry is not None:
                return Outcome(core.hit(url, entry, holding, prefetch), True, entry.size)
        chosen = (source or self._whole)(mu, fresh)
        return await self._shared(chosen, holding, fresh, on_bytes, prefetch)

    async def obtain_source(
        self, source: Source, holding: Holding, on_bytes: Callable[[int], None] | None = None, prefetch: bool = False
    ) -> Outcome:
        """The entry of a source that is not a whole object (a block): a hit, or downloaded once."""
        key = source.key
        private = holding.private(key)
        if private is not None:
            return Outcome(private, False, 0)
        entry = self._core.cached(key, None)
        if entry is not None:
            return Outcome(self._core.hit(key, entry, holding, prefetch), True, entry.size)
        return await self._shared(source, holding, None, on_bytes, prefetch)

    async def _shared(
        self,
        source: Source,
        holding: Holding,
        fresh: ObjectInfo | None,
        on_bytes: Callable[[int], None] | None,
        prefetch: bool,
    ) -> Outcome:
        """Single flight in this process: the first request of a key downloads, the others wait for it."""
        key = source.key
        while True:
            with self._inflight_lock:
                future = self._inflight.get(key)
                leader = future is None
                if future is None:
                    future = self._inflight[key] = Future()
            if leader:
                break
            try:
                outcome = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if future.cancelled() and not (task is not None and task.cancelling()):
                    continue  # the leader was cancelled, not us: download it ourselves
                raise
            if outcome.declined is not None:
                return outcome
            assert outcome.path is not None
            if outcome.cached:
                entry = self._core.memo.get(key) or Entry(outcome.path, str(outcome.path), outcome.size, None, None)
                return Outcome(self._core.hit(key, entry, holding, prefetch), True, outcome.size)
            try:
                return Outcome(holding.adopt(key, outcome.path), False, outcome.size)
            except OSError:  # the other lease already closed
                return await self._download(source, holding, fresh, on_bytes, prefetch)
        try:
            outcome = await self._download(source, holding, fresh, on_bytes, prefetch)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(outcome)
        finally:
            with self._inflight_lock:
                self._inflight.pop(key, None)
        return outcome

    async def _download(
        self,
        source: Source,
        holding: Holding,
        fresh: ObjectInfo | None,
        on_bytes: Callable[[int], None] | None,
        prefetch: bool,
    ) -> Outcome:
        core = self._core
        url = source.key
        url_digest = digest(url)
        rel = file_name(url_digest, source.extension)
        ext = rel[2 + 1 + 64 :]
        final_name = f"{core.root}/{rel}"
        lock = await core.locks.acquire_async(url_digest)
        keep_lock = False  # handed over to the index write that publishes the entry
        try:
            # Another process (or thread of another cache object) may have finished it meanwhile;
            # it renames the file before it writes the row, so no file means no entry.
            entry = core.lookup(url) if os.path.exists(final_name) else None
            if entry is not None and (fresh is None or same_version(entry, fresh)):
                core.hit(url, entry, holding, prefetch)
                return Outcome(entry.path, True, entry.size)
            if url_digest[:2] not in self._known_dirs:
                os.makedirs(f"{core.root}/{url_digest[:2]}", exist_ok=True)
                self._known_dirs.add(url_digest[:2])
            core.stats.add(misses=1)
            holding.note_download(url)
            state = _Download(core.root)

            def counted(n: int) -> None:
                core.stats.add(nbytes=n)
                if on_bytes is not None:
                    on_bytes(n)

            try:
                info = await source.fetch(
                    core.stage, lambda info: self._sink(state, url, rel, ext, info, holding), counted
                )
                if isinstance(info, Declined):
                    if info.then is not None:
                        await info.then()  # still under the entry lock: other processes wait for it
                    return Outcome(None, False, 0, declined=info.info)
                assert state.file is not None
                state.file.close()
                state.file = None
                if state.temp is not None and state.reserved:
                    os.replace(f"{core.root}/{state.temp}", final_name)
                    state.temp = None
                    final = Path(final_name)
                    holding.hold(url, info.size, prefetch)
                    core.memo.remember(url, Entry(final, final_name, info.size, info.etag, None))
                    # The file is complete: this process may use it at once. Other processes wait
                    # on the entry lock until the index row is committed, so the lock goes with
                    # the (group-committed) index write instead of making this thread wait.
                    published = self._publish(url, rel, info)
                    state.reserved = False
                    keep_lock = True
                    published.add_done_callback(lambda done: self._published(done, lock, url_digest, url))
                    return Outcome(final, True, info.size)
                assert state.private is not None
                private = state.private
                state.private = None
                holding.keep_private(url, private)
                return Outcome(private, False, info.size)
            except MediaError:
                raise
            except OSError as exc:
                raise CacheError(f"cannot write to the file cache at {core.directory}: {exc}") from exc
            finally:
                state.discard_file()
                if state.reserved:
                    core.budget.unreserve(state.size)
        finally:
            if not keep_lock:
                core.locks.release(lock, url_digest)

    async def adopt(self, mu: MediaUrl, source: Path, info: ObjectInfo) -> bool:
        """Make the local file ``source`` (the bytes just uploaded to ``mu``) the cache entry of ``mu``.

        Like a download's publish: under the entry lock and a reservation, ``source`` is moved in
        (copied through ``tmp/`` when it is on another file system), renamed and indexed. Returns
        False, leaving ``source`` where it is, when the budget has no room or the entry exists.
        Runs on the transfer stage's loop.
        """
        core = self._core
        url = mu.url
        url_digest = digest(url)
        rel = file_name(url_digest, mu.extension)
        final_name = f"{core.root}/{rel}"
        if not core.budget.fits(info.size):
            return False
        lock = await core.locks.acquire_async(url_digest)
        keep_lock = False
        try:
            if os.path.exists(final_name) and core.lookup(url) is not None:
                return False  # the same content is cached already (names are content addresses)
            victims = await core.budget.reserve(info.size)
            if victims is None:
                return False
            if victims:
                core.remove_files(victims)
            try:
                os.makedirs(f"{core.root}/{url_digest[:2]}", exist_ok=True)
                try:
                    os.replace(source, final_name)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    temp = f"{core.root}/tmp/{rel[3:]}.{core.pid}-{core.owner[-12:]}{next(self._temp_ids):x}.part"
                    shutil.copyfile(source, temp)
                    os.replace(temp, final_name)
                    os.unlink(source)
            except OSError as exc:
                core.budget.unreserve(info.size)
                raise CacheError(f"cannot write to the file cache at {core.directory}: {exc}") from exc
            core.memo.remember(url, Entry(Path(final_name), final_name, info.size, info.etag, None))
            published = self._publish(url, rel, info)
            keep_lock = True
            published.add_done_callback(lambda done: self._published(done, lock, url_digest, url))
            return True
        finally:
            if not keep_lock:
                core.locks.release(lock, url_digest)

    async def _sink(
        self, state: _Download, url: str, rel: str, ext: str, info: ObjectInfo, holding: Holding
    ) -> BinaryIO:
        """Choose the file for one attempt: a reserved temp file in the cache, or a lease-private file."""
        core = self._core
        if state.file is not None and state.size == info.size:
            return state.file  # a retry of the same object: same reservation, same file
        state.discard_file()
        if state.reserved:
            core.budget.unreserve(state.size)
            state.reserved = False
        state.size = info.size
        temp = f"tmp/{rel[3:]}.{core.pid}-{core.owner[-12:]}{next(self._temp_ids):x}.part"
        state.reserved = False
        if core.budget.fits(info.size):
            victims = await core.budget.reserve(info.size)
            if victims is not None:
                state.reserved = True
                if victims:
                    core.remove_files(victims)
                    holding.note_evicted(url for url, _, _ in victims)
        if state.reserved:
            fd = os.open(f"{core.root}/{temp}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)  # tells sweepers in other processes that the writer lives
            state.temp = temp
            state.file = os.fdopen(fd, "w+b", buffering=0)  # chunks are large: no copy into a buffer
        else:
            if not core.budget.fits(info.size):
                log.info("%s (%s) is larger than the cache: not cached", redact_url(url), human_size(info.size))
            state.private = holding.private_path(url, ext)
            state.file = open(state.private, "w+b", buffering=0)  # noqa: SIM115 - closed by the caller
        return state.file

    def _publish(self, url: str, rel: str, info: ObjectInfo) -> Future[None]:
        """Queue the index row of a renamed file (and turn its reservation into the entry)."""
        core = self._core
        now = time.time()
        modified = fetch.last_modified_timestamp(info.last_modified)

        def publish(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO entries (url, path, size, etag, last_modified, created, last_access)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (url) DO UPDATE SET path = excluded.path, size = excluded.size,"
                " etag = excluded.etag, last_modified = excluded.last_modified,"
                " created = excluded.created, last_access = excluded.last_access",
                (url, rel, info.size, info.etag, modified, now, now),
            )
            # The smaller reservation and the lease's pin (taken before this was queued) are written
            # at the end of this same transaction: other processes see the entry, its pin and its
            # bytes moved out of the reservation all at once.
            core.access.written(url, now)
            core.budget.published(info.size)

        return core.index.submit(publish)

    def _published(self, done: Future[None], lock: int, url_digest: str, url: str) -> None:
        """After the index row is committed: release the entry lock (other processes may read it now)."""
        self._core.locks.release(lock, url_digest)
        error = done.exception()
        if error is not None:
            self._core.memo.pop(url, None)
            log.warning("could not record %s in the file cache index: %s", redact_url(url), error)
