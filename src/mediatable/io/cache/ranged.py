"""Ranged reads through the file cache: large objects opened as seekable files whose blocks are cache entries.

:meth:`RangedReads.open` decides per object, from its size, between a whole download and ranged
reads, with as few requests as a whole download needs:

1. a whole copy in the cache (or a file:// URL) is used as it is;
2. blocks of the object already in the cache give its version and size without a request;
3. otherwise one GET of the first block (``Range: bytes=0-<block_size - 1>``) tells the size and
   version (an empty object, which has no byte 0 to ask for, is downloaded whole instead): an
   object that fits in it is cached whole from that one answer; one smaller than
   ``settings.min_ranged_size`` is completed with one more ranged GET and cached whole; a larger
   one keeps that block as its first block entry and is opened as a :class:`RemoteObject`.

All of that runs under the object's entry lock (the lock a whole download of it takes), so
processes opening one object together make one request. A server that does not answer ranges
is noticed (not assumed) on that first GET and the object is downloaded whole; its origin is
remembered for the life of the cache object.

A whole download of an object that has blocks in the cache (:class:`WholeFromBlocks`, what every
whole download uses) copies the cached blocks and fetches only the missing ranges, all pinned to
the blocks' version; if the object changed meanwhile it is downloaded whole from scratch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from obstore.exceptions import BaseError as ObstoreError

from mediatable.errors import CacheError, MediaChanged, MediaFetchError
from mediatable.io import fetch
from mediatable.io.cache.blocks import (
    BLOCK_EXTENSION,
    TRAILER_SIZE,
    KnownVersion,
    RangesUnsupported,
    block_key,
    block_keys,
    forget_version,
    get_range,
    known_versions,
    read_block_file,
    same_object,
    stream_into,
    trailer,
)
from mediatable.io.cache.core import Core
from mediatable.io.cache.download import Declined, Downloader, Sink, Source
from mediatable.io.cache.entries import same_version
from mediatable.io.cache.holding import Holding
from mediatable.io.cache.index import Row
from mediatable.io.objects import ObjectInfo
from mediatable.io.ranges import RemoteFile
from mediatable.io.transfer import TransferStage
from mediatable.io.urls import MediaUrl, redact_url

__all__ = ["RangedReads", "RemoteObject"]

log = logging.getLogger("mediatable.io.cache")


def _block_count(size: int, block_size: int) -> int:
    return max((size + block_size - 1) // block_size, 1)


def _block_span(index: int, size: int, block_size: int) -> tuple[int, int]:
    return index * block_size, min((index + 1) * block_size, size)


async def _write_block(sink: Sink, data: bytes, version: ObjectInfo) -> ObjectInfo:
    """Write one block entry (data and trailer); its row records the object's ETag and date."""
    entry = ObjectInfo(size=len(data) + TRAILER_SIZE, etag=version.etag, last_modified=version.last_modified)
    file = await sink(entry)
    file.seek(0)
    file.truncate()
    file.write(data)
    file.write(trailer(data))
    file.flush()
    return entry


class RangedReads:
    """Opens objects for ranged reads and reads their blocks, for the leases of one cache.

    Thread-safe; the coroutines run on the transfer stage's loop.
    """

    def __init__(self, core: Core, downloader: Downloader) -> None:
        self.core = core
        self.downloader = downloader
        self.block_size = int(core.settings.block_size)
        self.min_ranged_size = int(core.settings.min_ranged_size)
        self._no_ranges: set[str] = set()  # http origins that answered a range with the whole object

    def whole(self, mu: MediaUrl, fresh: ObjectInfo | None) -> Source:
        """The source of every whole download: reuses cached blocks of the object."""
        return WholeFromBlocks(self, mu, fresh)

    async def open(
        self,
        mu: MediaUrl,
        holding: Holding,
        on_bytes: Callable[[int], None] | None = None,
        prefetch: bool = False,
        missing: bool = False,
    ) -> Path | RemoteObject:
        """A large object as a :class:`RemoteObject`; anything else as a local file (see the module docstring)."""
        if mu.kind == "http" and mu.bucket in self._no_ranges:
            return await self.downloader.obtain(mu, holding, on_bytes, prefetch, missing)
        outcome = await self.downloader.obtain_outcome(
            mu, holding, lambda url, fresh: FirstBlock(self, holding, url, fresh), on_bytes, prefetch, missing
        )
        if outcome.declined is not None:
            return RemoteObject(self, holding, mu, outcome.declined)
        assert outcome.path is not None
        return outcome.path

    def no_ranges(self, mu: MediaUrl) -> None:
        if mu.kind == "http":
            self._no_ranges.add(mu.bucket)
        log.info("%s: the server ignores range requests; downloading it whole", redact_url(mu.url))

    def known(self, mu: MediaUrl, fresh: ObjectInfo | None, rows: list[Row]) -> KnownVersion | None:
        """The most recently cached version of ``mu`` with blocks (matching ``fresh`` when given).

        ``rows``: the index rows of its blocks (a source's ``related``, read with its entry).
        """
        for known in known_versions(mu.cache_key, rows):
            if fresh is None or same_object(known.info, fresh):
                return known
        return None

    def forget(self, mu: MediaUrl, version: ObjectInfo) -> None:
        """Drop the blocks of a version found to be gone from the server."""
        victims = forget_version(self.core.index, mu.cache_key, version)
        if victims:
            self.core.remove_files(victims, unpinned_only=True)


class WholeFromBlocks:
    """A whole object: cached blocks of one version copied, the gaps fetched pinned to that version."""

    windowed = False

    def __init__(self, reads: RangedReads, mu: MediaUrl, fresh: ObjectInfo | None) -> None:
        self.reads, self.url, self.fresh = reads, mu, fresh
        self.key, self.extension = mu.cache_key, mu.extension
        self.related_keys = block_keys(mu.cache_key)

    async def fetch(
        self, stage: TransferStage, sink: Sink, on_bytes: Callable[[int], None], related: list[Row]
    ) -> ObjectInfo | fetch.Downloaded:
        known = self.reads.known(self.url, self.fresh, related)
        if known is not None:
            try:
                info = await stage.run(self.url, lambda: self._assemble(known, sink, on_bytes))
            except (MediaChanged, RangesUnsupported):
                await asyncio.to_thread(self.reads.forget, self.url, known.info)
            else:
                # The whole copy serves every range from now on: its blocks would only take space.
                await asyncio.to_thread(self.reads.forget, self.url, known.info)
                return info
        stores = self.reads.core.stores
        return await stage.run(
            self.url, lambda: fetch.download_attempt(stores, self.url, sink, on_bytes, stall=stage.stall, hashed=True)
        )

    async def _assemble(self, known: KnownVersion, sink: Sink, on_bytes: Callable[[int], None]) -> ObjectInfo:
        info, size, block_size = known.info, known.info.size, known.block_size
        file = await sink(info)
        file.seek(0)
        file.truncate()
        count = _block_count(size, block_size)
        core = self.reads.core

        def block_file(index: int) -> str | None:
            rel = known.blocks.get(index)
            if rel is not None:
                return f"{core.root}/{rel}"
            # fetched by this process a moment ago, its index row not committed yet
            entry = core.memo.get(block_key(self.url.cache_key, info, block_size, index))
            return entry.name if entry is not None else None

        index = 0
        while index < count:
            start, end = _block_span(index, size, block_size)
            path = block_file(index)
            data = None if path is None else await asyncio.to_thread(read_block_file, path)
            if data is not None and len(data) == end - start:
                file.write(data)
                index += 1
                continue
            stop = index + 1  # a run of missing blocks: one request
            while stop < count and block_file(stop) is None:
                stop += 1
            end = _block_span(stop - 1, size, block_size)[1]
            result, _ = await get_range(core.stores, self.url, start, end, info)
            await stream_into(result, file, self.url, end - start, on_bytes)
            index = stop
        file.flush()
        return info


class FirstBlock:
    """Opening an object for ranged reads: under its whole-object key, the first block or the whole object."""

    windowed = False

    def __init__(self, reads: RangedReads, holding: Holding, mu: MediaUrl, fresh: ObjectInfo | None) -> None:
        self.reads, self.holding, self.url, self.fresh = reads, holding, mu, fresh
        self.key, self.extension = mu.cache_key, mu.extension
        self.related_keys = block_keys(mu.cache_key)

    async def fetch(
        self, stage: TransferStage, sink: Sink, on_bytes: Callable[[int], None], related: list[Row]
    ) -> ObjectInfo | fetch.Downloaded | Declined:
        reads = self.reads
        known = reads.known(self.url, self.fresh, related)
        if known is not None:
            if known.info.size >= reads.min_ranged_size:
                return Declined(known.info)  # its version is known: no request at all
            return await WholeFromBlocks(reads, self.url, self.fresh).fetch(stage, sink, on_bytes, related)
        try:
            return await stage.run(self.url, lambda: self._attempt(sink, on_bytes))
        except RangesUnsupported:
            reads.no_ranges(self.url)
        except MediaFetchError as error:
            if error.status != 416:
                raise
            # A range from byte 0 is refused only when there is no byte 0: an empty object, read whole.
        stores = reads.core.stores
        return await stage.run(
            self.url, lambda: fetch.download_attempt(stores, self.url, sink, on_bytes, stall=stage.stall, hashed=True)
        )

    async def _attempt(self, sink: Sink, on_bytes: Callable[[int], None]) -> ObjectInfo | Declined:
        reads = self.reads
        block_size = reads.block_size
        stores = reads.core.stores
        result, info = await get_range(stores, self.url, 0, block_size, self.fresh)
        if info.size <= block_size:  # the whole object came in this answer: one read, like a small download
            data = await _read_body(result, self.url, info.size, on_bytes, copy=False)
            file = await sink(info)
            file.seek(0)
            file.truncate()
            file.write(data)
            file.flush()
            return info
        first = await _read_body(result, self.url, block_size, on_bytes)
        if info.size < reads.min_ranged_size:  # small enough to keep whole: fetch the rest
            file = await sink(info)
            file.seek(0)
            file.truncate()
            file.write(first)
            rest, _ = await get_range(stores, self.url, block_size, info.size, info)
            await stream_into(rest, file, self.url, info.size - block_size, on_bytes)
            file.flush()
            return info

        async def keep_first_block() -> None:
            key = block_key(self.url.cache_key, info, block_size, 0)
            await reads.downloader.obtain_source(_Prefilled(key, self.url, first, info), self.holding)
            # Its index row is group-committed; a write queued after it commits after it. Until then
            # the object's lock stays held, so a process opening it next finds this block and its version.
            await asyncio.wrap_future(reads.core.index.submit(lambda db: None))

        return Declined(info, keep_first_block)


async def _read_body(
    result: object, mu: MediaUrl, expected: int, on_bytes: Callable[[int], None], copy: bool = True
) -> Any:
    """The whole body of a GET: ``bytes`` (what the CRC32C needs), or obstore's buffer without ``copy``."""
    try:
        body = await result.bytes_async()  # type: ignore[attr-defined]
        data = bytes(body) if copy else body
    except (ObstoreError, OSError) as exc:
        safe = redact_url(mu.url)
        raise MediaFetchError(f"connection lost reading {safe}: {exc}", url=safe, retryable=True) from exc
    if len(data) != expected:
        safe = redact_url(mu.url)
        raise MediaFetchError(
            f"incomplete body for {safe}: got {len(data)} of {expected} bytes", url=safe, retryable=True
        )
    on_bytes(len(data))
    return data


class _Prefilled:
    """A block whose bytes are already here (the first block of an object being opened)."""

    windowed = True
    related_keys = None

    def __init__(self, key: str, mu: MediaUrl, data: bytes, version: ObjectInfo) -> None:
        self.key, self.url, self.extension = key, mu, BLOCK_EXTENSION
        self.data, self.version = data, version

    async def fetch(
        self, stage: TransferStage, sink: Sink, on_bytes: Callable[[int], None], related: list[Row]
    ) -> ObjectInfo:
        return await _write_block(sink, self.data, self.version)


class _Block:
    """One block of one version of an object, fetched with one ranged GET."""

    windowed = True
    related_keys = None

    def __init__(self, reads: RangedReads, mu: MediaUrl, version: ObjectInfo, block_size: int, index: int) -> None:
        self.reads, self.url, self.version, self.index = reads, mu, version, index
        self.key, self.extension = block_key(mu.cache_key, version, block_size, index), BLOCK_EXTENSION
        self.start, self.end = _block_span(index, version.size, block_size)

    async def fetch(
        self, stage: TransferStage, sink: Sink, on_bytes: Callable[[int], None], related: list[Row]
    ) -> ObjectInfo:
        return await stage.run(self.url, lambda: self._attempt(sink, on_bytes))

    async def _attempt(self, sink: Sink, on_bytes: Callable[[int], None]) -> ObjectInfo:
        result, _ = await get_range(self.reads.core.stores, self.url, self.start, self.end, self.version)
        data = await _read_body(result, self.url, self.end - self.start, on_bytes)
        return await _write_block(sink, data, self.version)


class RemoteObject:
    """A large object opened for ranged reads, its version pinned: :meth:`open` gives a seekable file.

    Every file opened from it reads that version only: a block fetched after the object changed
    raises :class:`~mediatable.errors.MediaChanged`. Valid while the lease it came from is open.

    Attributes:
        url: the normalized URL.
        size: the object's length in bytes.
        version: the pinned version (size, ETag, last modified).
    """

    def __init__(self, reads: RangedReads, holding: Holding, mu: MediaUrl, version: ObjectInfo) -> None:
        self._reads = reads
        self._holding = holding
        self._mu = mu
        self.url = mu.url
        self.size = version.size
        self.version = version
        self.block_size = reads.block_size
        self.name = redact_url(mu.url)
        self._ahead: set[Future[object]] = set()
        self._ahead_lock = threading.Lock()

    def open(self) -> RemoteFile:
        """A new read-only file over the object (close it after use).

        Examples:
            >>> with lease.get_ranged("s3://bucket/big.mp4").open() as f:  # doctest: +SKIP
            ...     header = f.read(16)
        """
        return RemoteFile(self)

    def read_block(self, index: int) -> bytes:
        """Block ``index``: from the cache (checked against its CRC32C), else fetched (blocking)."""
        if self._holding.closed:
            raise CacheError(f"cannot read {self.name}: the cache lease it was opened with is closed")
        core = self._reads.core
        source = _Block(self._reads, self._mu, self.version, self.block_size, index)
        expected = source.end - source.start
        whole = self._whole_copy()
        if whole is not None:
            with open(whole, "rb") as file:
                file.seek(source.start)
                data = file.read(expected)
            if len(data) == expected:
                return data
        for _ in range(2):
            path = self._cached(source.key)
            if path is None:
                try:
                    outcome = core.stage.submit(self._reads.downloader.obtain_source(source, self._holding)).result()
                except MediaChanged:
                    self._reads.forget(self._mu, self.version)
                    raise
                assert outcome.path is not None
                path = outcome.path
            data = read_block_file(str(path))
            if data is not None and len(data) == expected:
                return data
            self._drop(source.key, path)
        safe = self.name
        raise MediaFetchError(f"block {index} of {safe} fails its checksum even after fetching it again", url=safe)

    def prefetch(self, indices: Sequence[int]) -> None:
        """Fetch blocks ahead, without waiting; a failure is left for the read that needs the block."""
        if self._holding.closed:
            return
        core = self._reads.core
        sources = [_Block(self._reads, self._mu, self.version, self.block_size, i) for i in indices]
        wanted = [s for s in sources if self._cached(s.key, pin=False) is None]
        if not wanted:
            return
        futures = core.stage.submit_many([self._reads.downloader.obtain_source(s, self._holding) for s in wanted])
        with self._ahead_lock:
            self._ahead.update(futures)
        for future in futures:
            future.add_done_callback(self._ahead_done)

    def _ahead_done(self, future: Future[object]) -> None:
        with self._ahead_lock:
            self._ahead.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.debug("read-ahead of %s failed: %s", self.name, future.exception())

    def _whole_copy(self) -> Path | None:
        """The cached whole copy of this version, if one was downloaded since the object was opened."""
        core = self._reads.core
        key = self._mu.cache_key
        entry = core.memo.get(key) or core.lookup(key)
        if entry is None or not same_version(entry, self.version):
            return None
        return core.serve(key, entry, self._holding, windowed=True)

    def _cached(self, key: str, pin: bool = True) -> Path | None:
        core = self._reads.core
        entry = core.memo.get(key) or core.lookup(key)
        if entry is None:
            return None
        if not pin:
            return entry.path if os.path.exists(entry.name) else None
        return core.serve(key, entry, self._holding, windowed=True)

    def _drop(self, key: str, path: Path) -> None:
        """A block that fails its check: forget its entry so that it is fetched again."""
        core = self._reads.core
        log.warning("block %s of %s is damaged in the cache: fetching it again", key.rsplit("/", 1)[-1], self.name)
        core.drop_damaged(key, path)

    def __repr__(self) -> str:
        return f"<RemoteObject {self.name!r} {self.size} bytes, {self.version.etag or 'no ETag'}>"
