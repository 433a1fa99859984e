"""Download and publish: one transfer per URL at a time, streamed to a temp file, renamed, then indexed.

A download streams into ``tmp/<name>.<owner>-<n>.part`` (same file system, so the final rename is
atomic; one folder, so finding leftovers never walks the whole cache), has its length checked and
its sha256 computed (:mod:`mediatable.io.fetch`), is renamed to a name nothing else uses and only
then gets its index row. The entry lock of the URL is held from before the transfer until that row
is committed, so other processes wait and then find the entry. A new version of an object (ETag
changed, damaged file) never overwrites the old file, which a lease elsewhere may be reading: it
gets a name of its own, and the old file goes once nobody holds it.

What is downloaded is a :class:`Source`: its index key, its file's extension and how to fetch it.
A whole object is the usual one (:class:`WholeObject`); blocks of large objects are others
(:mod:`mediatable.io.cache.ranged`). A source may also decline to produce its entry (a large object
opened for ranged reads): it then returns a :class:`Declined` instead of the object's metadata. A
source that reads other index rows (a whole object made from its cached blocks) names their key
range, and gets them from the query that looks up its entry under the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import BinaryIO, Protocol

from mediatable.errors import CacheError, MediaError
from mediatable.io import fetch
from mediatable.io.cache.core import Core
from mediatable.io.cache.entries import Entry, digest, file_name, same_version
from mediatable.io.cache.holding import Holding
from mediatable.io.cache.index import Row
from mediatable.io.cache.info import human_size
from mediatable.io.cache.locks import LockSet
from mediatable.io.cache.sweep import PIN_LOCKS
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
        key: the entry's key in the index (:attr:`~mediatable.io.urls.MediaUrl.cache_key` for a whole object).
        url: the object it comes from (retries, error messages, the progress of its lease).
        extension: the entry file's extension.
        related_keys: ``(low, high)``: the index rows with keys in that range are read with the
            entry's own, under its lock, and handed to :meth:`fetch`; None when it reads no others.
    """

    key: str
    url: MediaUrl
    extension: str
    windowed: bool  # held in the lease's window of recent files (blocks), not until it closes
    related_keys: tuple[str, str] | None

    async def fetch(
        self, stage: TransferStage, sink: Sink, on_bytes: Callable[[int], None], related: list[Row]
    ) -> ObjectInfo | fetch.Downloaded | Declined:
        """Write the entry's bytes into ``sink(info)`` (retrying on ``stage``); the metadata to record
        (with the content's sha256 when the source computed it). ``related``: the rows in ``related_keys``."""
        ...


class WholeObject:
    """The whole object at a URL, with one GET (:func:`mediatable.io.fetch.download_attempt`), hashed on the way."""

    windowed = False
    related_keys = None

    def __init__(self, stores: fetch.Stores, url: MediaUrl) -> None:
        self.stores, self.url, self.key, self.extension = stores, url, url.cache_key, url.extension

    async def fetch(
        self, stage: TransferStage, sink: Sink, on_bytes: Callable[[int], None], related: list[Row]
    ) -> fetch.Downloaded:
        return await stage.run(
            self.url,
            lambda: fetch.download_attempt(self.stores, self.url, sink, on_bytes, stall=stage.stall, hashed=True),
        )


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
        key = mu.cache_key
        fresh: ObjectInfo | None = None
        if core.validate and not holding.validated(key):
            fresh = await core.stage.run(mu, lambda: fetch.head_attempt(core.stores, mu, stall=core.stage.stall))
            holding.mark_validated(key)
        private = holding.private(key)
        if private is not None and fresh is None:
            return Outcome(private, False, 0)
        if not (missing and fresh is None):
            entry = core.memo.get(key) or core.lookup(key)
            if entry is not None and (fresh is None or same_version(entry, fresh)):
                path = core.serve(key, entry, holding, prefetch)
                if path is not None:
                    return Outcome(path, True, entry.size)
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
        entry = self._core.memo.get(key) or self._core.lookup(key)
        if entry is not None:
            path = self._core.serve(key, entry, holding, prefetch, source.windowed)
            if path is not None:
                return Outcome(path, True, entry.size)
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
                path = self._core.serve(key, entry, holding, prefetch, source.windowed)
                if path is not None:
                    return Outcome(path, True, outcome.size)
                continue  # evicted (or damaged) already: fetch it again
            try:
                return Outcome(holding.adopt(key, outcome.path), False, outcome.size)
            except OSError:  # the other lease already closed
                continue
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
        key = source.key
        mu = source.url
        url_digest = digest(key)
        lock = await core.locks.acquire_async(url_digest)
        keep_lock = False  # handed over to the index write that publishes the entry
        try:
            # Another process (or cache object) may have finished it while we waited for the lock.
            entry, related = core.lookup_with(key, source.related_keys)
            if entry is not None and (fresh is None or same_version(entry, fresh)):
                path = core.serve(key, entry, holding, prefetch, source.windowed)
                if path is not None:
                    return Outcome(path, True, entry.size)
            if mu.kind == "http" and not core.url_policy.allow_private:
                await asyncio.to_thread(core.url_policy.check_resolved, mu)  # DNS: where does the name point?
            extension = file_name(url_digest, source.extension)[3 + 64 :]
            rel = self._new_name(url_digest, extension, key)
            final_name = f"{core.root}/{rel}"
            core.stats.add(misses=1)
            holding.note_download(key)
            state = _Download(core.root)

            def counted(n: int) -> None:
                core.stats.add(nbytes=n)
                if on_bytes is not None:
                    on_bytes(n)

            try:
                got = await source.fetch(
                    core.stage, lambda info: self._sink(state, key, rel, extension, info, holding), counted, related
                )
                if isinstance(got, Declined):
                    if got.then is not None:
                        await got.then()  # still under the entry lock: other processes wait for it
                    return Outcome(None, False, 0, declined=got.info)
                info, sha256 = (got.info, got.sha256) if isinstance(got, fetch.Downloaded) else (got, None)
                assert state.file is not None
                state.file.close()
                state.file = None
                if state.temp is not None and state.reserved:
                    os.replace(f"{core.root}/{state.temp}", final_name)
                    state.temp = None
                    final = Path(final_name)
                    # Pinned before the row exists: an evictor that still holds this URL's pin key
                    # is removing an older entry (and lets go within a transaction); wait for it
                    # without blocking the loop, where that evictor may be one of our own tasks.
                    while not holding.hold(key, info.size, prefetch, source.windowed):
                        await asyncio.sleep(0.002)
                    core.memo.remember(key, Entry(final, final_name, info.size, info.etag, None))
                    # The file is complete: this process may use it at once. Other processes wait
                    # on the entry lock until the index row is committed, so the lock goes with
                    # the (group-committed) index write instead of making this thread wait.
                    replaced: list[str] = []
                    published = self._publish(key, rel, info, sha256, replaced)
                    state.reserved = False
                    keep_lock = True
                    published.add_done_callback(
                        lambda done: self._published(done, lock, url_digest, key, rel, info.size, replaced)
                    )
                    return Outcome(final, True, info.size)
                assert state.private is not None
                private = state.private
                state.private = None
                holding.keep_private(key, private)
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
        (copied through ``tmp/`` when it is on another file system), renamed to a name no file has
        and indexed. Returns False, leaving ``source`` where it is, when the budget has no room or
        the entry exists. Runs on the transfer stage's loop.
        """
        core = self._core
        key = mu.cache_key
        url_digest = digest(key)
        if not core.budget.fits(info.size):
            return False
        lock = await core.locks.acquire_async(url_digest)
        keep_lock = False
        try:
            entry = core.lookup(key)
            if entry is not None and os.path.exists(entry.name):
                return False  # the same content is cached already (names are content addresses)
            victims = await core.budget.reserve(info.size)
            if victims is None:
                return False
            rel = self._new_name(url_digest, file_name(url_digest, mu.extension)[3 + 64 :], key)
            final_name = f"{core.root}/{rel}"
            try:
                try:
                    os.replace(source, final_name)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    temp = f"{core.root}/tmp/{rel[3:]}.{core.owner}-{next(self._temp_ids):x}.part"
                    shutil.copyfile(source, temp)
                    os.replace(temp, final_name)
                    os.unlink(source)
            except OSError as exc:
                core.budget.unreserve(info.size)
                raise CacheError(f"cannot write to the file cache at {core.directory}: {exc}") from exc
            core.memo.remember(key, Entry(Path(final_name), final_name, info.size, info.etag, None))
            replaced: list[str] = []
            published = self._publish(key, rel, info, None, replaced)
            keep_lock = True
            published.add_done_callback(
                lambda done: self._published(done, lock, url_digest, key, rel, info.size, replaced)
            )
            return True
        finally:
            if not keep_lock:
                core.locks.release(lock, url_digest)

    def _new_name(self, url_digest: str, extension: str, key: str) -> str:
        """A path for a new file of this URL that no file has (the caller holds the entry lock).

        The usual name is free unless an older version, a damaged file or a crash leftover sits
        there; it is taken over when nobody holds it, else the new file gets a name of its own.
        """
        core = self._core
        if url_digest[:2] not in self._known_dirs:
            os.makedirs(f"{core.root}/{url_digest[:2]}", exist_ok=True)
            self._known_dirs.add(url_digest[:2])
        rel = file_name(url_digest, extension)
        if not os.path.exists(f"{core.root}/{rel}"):
            return rel
        with LockSet(core.lock_folder, PIN_LOCKS) as evicting:
            if core.pins.counts.get(key, 0) == 0 and evicting.add(url_digest, shared=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{core.root}/{rel}")
                return rel
        stem, dot, ext = rel.rpartition(".") if "." in rel[3:] else (rel, "", "")
        return f"{stem}~{uuid.uuid4().hex[:8]}{dot}{ext}"

    async def _sink(
        self, state: _Download, key: str, rel: str, ext: str, info: ObjectInfo, holding: Holding
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
        if core.budget.fits(info.size):
            victims = await core.budget.reserve(info.size)
            if victims is not None:
                state.reserved = True
                if victims:
                    holding.note_evicted(url for url, _, _ in victims)
        if state.reserved:
            temp = f"tmp/{rel[3:]}.{core.owner}-{next(self._temp_ids):x}.part"
            fd = os.open(f"{core.root}/{temp}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            state.temp = temp
            state.file = os.fdopen(fd, "w+b", buffering=0)  # chunks are large: no copy into a buffer
        else:
            if not core.budget.fits(info.size):
                log.info("%s (%s) is larger than the cache: not cached", redact_url(key), human_size(info.size))
            state.private = holding.private_path(key, ext)
            state.file = open(state.private, "w+b", buffering=0)  # noqa: SIM115 - closed by the caller
        return state.file

    def _publish(self, key: str, rel: str, info: ObjectInfo, sha256: str | None, replaced: list[str]) -> Future[None]:
        """Queue the index row of a renamed file (and turn its reservation into the entry).

        ``replaced`` receives the path of the entry's previous file, if it had another one.
        """
        core = self._core
        now = time.time()
        modified = fetch.last_modified_timestamp(info.last_modified)

        def publish(db: sqlite3.Connection) -> None:
            old = db.execute("SELECT path FROM entries WHERE url = ?", (key,)).fetchone()
            db.execute(
                "INSERT INTO entries (url, path, size, etag, last_modified, created, last_access, sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (url) DO UPDATE SET path = excluded.path, size = excluded.size,"
                " etag = excluded.etag, last_modified = excluded.last_modified,"
                " created = excluded.created, last_access = excluded.last_access, sha256 = excluded.sha256",
                (key, rel, info.size, info.etag, modified, now, now, sha256),
            )
            # The smaller reservation is written at the end of this same transaction: other
            # processes see the entry and its bytes moved out of the reservation at once.
            core.access.written(key, now)
            core.budget.published(info.size)
            replaced[:] = [old[0]] if old is not None and old[0] != rel else []

        return core.index.submit(publish)

    def _published(
        self, done: Future[None], lock: int, url_digest: str, key: str, rel: str, size: int, replaced: list[str]
    ) -> None:
        """After the index row is committed (or failed): tidy up, then release the entry lock."""
        core = self._core
        try:
            error = done.exception()
            if error is not None:
                # No row: the reserved bytes go back to the index (nothing else would return them),
                # and the file is a leftover that prune removes once nobody holds it.
                core.memo.pop(key, None)
                core.budget.give_back(size)
                log.warning("could not record %s in the file cache index: %s", redact_url(key), error)
            for old in replaced:
                core.remove_if_unpinned(key, old)
        finally:
            core.locks.release(lock, url_digest)
