"""Leases: the handle through which work reads cached files; what it fetched stays pinned until it closes."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import warnings
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sized
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from mediatable.errors import CacheError, MediaError, MediaNotFound
from mediatable.io.cache.core import Core
from mediatable.io.cache.download import Downloader
from mediatable.io.cache.entries import Entry
from mediatable.io.cache.holding import Holding
from mediatable.io.cache.info import CacheThrashingWarning, human_size, round_size
from mediatable.io.cache.ranged import RangedReads, RemoteObject
from mediatable.io.urls import MediaUrl

__all__ = ["Lease"]

log = logging.getLogger("mediatable.io.cache")


class Lease:
    """Files fetched through a lease stay pinned (never evicted) until it closes.

    Get one from :meth:`FileCache.lease <mediatable.io.cache.FileCache.lease>` and use it as a
    context manager. All methods are thread-safe: the execution pipeline prefetches with
    :meth:`get_many` on one thread while compute threads call :meth:`get`. A lease pins its most
    recent files up to half the cache's budget and unpins older ones beyond that, so one lease can
    stream over more data than the cache holds. Objects too big for the cache are kept in a folder
    private to the lease and deleted when it closes.

    Examples:
        >>> with cache.lease() as lease:  # doctest: +SKIP
        ...     for path in lease.get_many(["s3://b/1.jpg", "s3://b/2.jpg"]):
        ...         print(path)
    """

    def __init__(self, core: Core, downloader: Downloader, reads: RangedReads, on_close: Any) -> None:
        self._core = core
        self._downloader = downloader
        self._reads = reads
        self._on_close = on_close
        self._holding = Holding(core.pins, core.directory, core.owner, core.budget.budget // 2)
        self._warned = False
        self._handed_out = 0

    @property
    def handed_out_bytes(self) -> int:
        """Bytes of the files :meth:`get_many` has handed out pinned so far, each counted once.

        A consumer that holds a batch of them at once (the pipeline's chunks) keeps the bytes it took
        for the batch under :attr:`pin_capacity` by this count, without a stat per file.
        """
        return self._handed_out

    @property
    def pin_capacity(self) -> int:
        """Bytes of handed-out files this lease keeps pinned (half the cache's budget); older ones are let go.

        Work that holds many handed-out files at once (the pipeline's chunks) stays under it, so
        nothing it holds can be evicted before it is used.
        """
        return self._holding.pin_cap

    def get(self, url: str | MediaUrl | os.PathLike[str]) -> Path:
        """The local path of a media URL, downloading it on a miss.

        Args:
            url: any URL :func:`~mediatable.io.urls.parse_url` accepts, or a local path.

        Returns:
            A path that stays valid until the lease closes or releases it (local files: their own path).

        Raises:
            MediaError: the object cannot be fetched (MediaNotFound, MediaAccessDenied, ...).
            UnsupportedScheme: ``url`` is not a media URL.
            CacheError: the cache folder cannot be written.

        Examples:
            >>> with cache.lease() as lease:  # doctest: +SKIP
            ...     lease.get("https://example.com/cat.jpg")
            PosixPath('/home/me/.mediatable/file_cache/3f/3f0a....jpg')
        """
        path = self._get(url, ranged=False)
        self._warn_if_thrashing()
        assert isinstance(path, Path)
        return path

    def get_ranged(self, url: str | MediaUrl | os.PathLike[str]) -> Path | RemoteObject:
        """A local file, or for a large remote object not cached whole, a :class:`RemoteObject` to read by ranges.

        Objects of at least ``settings.min_ranged_size`` bytes are not downloaded: ``.open()`` on
        the result gives a seekable file that fetches blocks (``settings.block_size``) as they are
        read, each once, kept in the cache. Smaller objects, objects the cache holds whole, local
        files and objects on servers that ignore ``Range`` give a local path as :meth:`get` does.
        Opening costs at most one request (the first block), none when blocks are cached.

        Raises:
            MediaError: the object cannot be fetched.

        Examples:
            >>> with cache.lease() as lease:  # doctest: +SKIP
            ...     got = lease.get_ranged("s3://bucket/big.mp4")
            ...     with (got.open() if isinstance(got, RemoteObject) else open(got, "rb")) as f:
            ...         container = av.open(f)
        """
        got = self._get(url, ranged=True)
        self._warn_if_thrashing()
        return got

    def _get(self, url: str | MediaUrl | os.PathLike[str], ranged: bool) -> Path | RemoteObject:
        """:meth:`get` or :meth:`get_ranged`: a memo hit at once, else the download (or ranged open)."""
        holding = self._holding
        if holding.closed:
            raise CacheError("this cache lease is closed")
        core = self._core
        mu = core.parse(url)
        if mu.kind == "file":
            return _local(mu)
        key = mu.cache_key
        if not core.validate or holding.validated(key):
            entry = core.memo.get(key)
            if entry is not None:
                path = core.serve(key, entry, holding)
                if path is not None:
                    return path
        self._check_open()
        fetching = self._reads.open(mu, holding) if ranged else self._downloader.obtain(mu, holding)
        got: Path | RemoteObject = core.stage.submit(fetching).result()
        return got

    def get_many(
        self,
        urls: Iterable[str | MediaUrl | os.PathLike[str]],
        *,
        progress: bool | None = None,
        ranged: Collection[str] = (),
    ) -> Iterator[Path | RemoteObject | MediaError]:
        """Fetch many URLs with bounded concurrency; yield each result in input order as soon as it is ready.

        Up to ``settings.max_concurrent_downloads`` downloads run at once on the transfer stage,
        while the caller works on earlier results. A URL that appears twice is downloaded once. A
        failure yields that position's :class:`~mediatable.errors.MediaError` (its message names the
        redacted URL and the HTTP status) and the other URLs proceed.

        A yielded path stays pinned while the lease has handed out less than half the cache's
        budget after it (so a scan larger than the cache works), or until the lease closes, or
        :meth:`get` or :meth:`release` is called for it; use :meth:`get` for a path that must last.

        Args:
            urls: media URLs or local paths.
            progress: show a progress bar (objects and bytes) on stderr; default ``settings.progress``,
                and when that is None, only if stderr is a terminal. Needs a cache built with
                ``progress_bars`` (the session's is).
            ranged: URLs (as given in ``urls``) to open as :meth:`get_ranged` does: a large object
                not cached whole yields a :class:`RemoteObject` instead of being downloaded.

        Yields:
            A local path (or a RemoteObject), or the error of that URL.

        Raises:
            UnsupportedScheme: an item is not a media URL.
            CacheError: the cache folder cannot be written.

        Examples:
            >>> with cache.lease() as lease:  # doctest: +SKIP
            ...     widths = [PIL.Image.open(p).width for p in lease.get_many(urls)]
        """
        self._check_open()
        core = self._core
        bars = core.progress_bars
        bar = None if bars is None else bars("Fetching media", len(urls) if isinstance(urls, Sized) else None, progress)
        counter = _ByteCounter()
        window: deque[
            tuple[str | None, Path | RemoteObject | MediaError | Future[Path | RemoteObject | MediaError]]
        ] = deque()
        limit = max(4 * core.stage.concurrency, 64)
        source = iter(urls)
        exhausted = False
        try:
            while True:
                if not exhausted and len(window) <= limit // 2:
                    batch = list(itertools.islice(source, limit - len(window)))
                    exhausted = not batch
                    window.extend(self._start(batch, counter, ranged))
                if not window:
                    break
                url, item = window.popleft()
                if isinstance(item, Future):
                    item = item.result()
                if url is not None and isinstance(item, Path):
                    self._handed_out += self._holding.hand_out(url)
                if bar is not None:
                    bar.advance(1, counter.take())
                self._warn_if_thrashing()
                yield item
        finally:
            for _, pending in window:
                if isinstance(pending, Future):
                    pending.cancel()
            if bar is not None:
                bar.close()

    def release(self, url: str | MediaUrl | os.PathLike[str]) -> None:
        """Unpin one URL before the lease closes (and delete it if it was too big to cache).

        Examples:
            >>> lease.release("s3://bucket/a.jpg")  # doctest: +SKIP
        """
        self._holding.release(self._core.parse(url).cache_key)
        self._core.maybe_flush()

    def close(self) -> None:
        """Unpin everything, delete the lease's private files, publish the unpinning to the index."""
        if not self._holding.close():
            return
        self._on_close(self)
        core = self._core
        if not core.closed:
            core.budget.return_credit()
            core.flush()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._holding.closed:
            raise CacheError("this cache lease is closed")
        self._core.check_open()

    def _start(
        self, batch: list[Any], counter: _ByteCounter, ranged: Collection[str]
    ) -> list[tuple[str | None, Path | RemoteObject | MediaError | Future[Path | RemoteObject | MediaError]]]:
        """Resolve hits at once (one index query for the batch); send misses to the transfer stage.

        Returns (remote url or None, result or future) in input order.
        """
        core = self._core
        holding = self._holding
        keys: list[str | None] = []
        out: list[Path | RemoteObject | MediaError | Future[Path | RemoteObject | MediaError] | None] = []
        misses: list[tuple[int, MediaUrl]] = []
        wants_ranges: set[int] = set()
        hits: list[tuple[int, MediaUrl, Entry]] = []
        for raw in batch:
            try:
                mu = core.parse(raw)
            except MediaError as error:  # refused by the URL policy: this item's error
                keys.append(None)
                out.append(error)
                continue
            if mu.kind == "file":
                keys.append(None)
                try:
                    out.append(_local(mu))
                except MediaError as error:
                    out.append(error)
                continue
            key = mu.cache_key
            keys.append(key)
            if ranged and isinstance(raw, str) and raw in ranged:
                wants_ranges.add(len(out))
            entry = None if core.validate and not holding.validated(key) else core.memo.get(key)
            if entry is not None:
                hits.append((len(out), mu, entry))
            else:
                misses.append((len(out), mu))
            out.append(None)
        if misses and not core.validate:
            found = core.lookup_many([mu.cache_key for _, mu in misses])
            still: list[tuple[int, MediaUrl]] = []
            for index, mu in misses:
                entry = found.get(mu.cache_key)
                if entry is not None:
                    hits.append((index, mu, entry))
                else:
                    still.append((index, mu))
            misses = still
        if hits:  # one round for the whole batch: this is the warm path
            served = core.serve_many(((mu.cache_key, entry) for _, mu, entry in hits), holding)
            for index, mu, _ in hits:
                path = served.get(mu.cache_key)
                if path is not None:
                    out[index] = path
                else:
                    misses.append((index, mu))  # evicted or damaged meanwhile: fetch it
        if misses:  # one hand-over to the transfer stage for the whole batch
            futures = core.stage.submit_many(
                [self._fetch_one(mu, counter, not core.validate, index in wants_ranges) for index, mu in misses]
            )
            for (index, _), future in zip(misses, futures, strict=True):
                out[index] = future
        return [(key, item) for key, item in zip(keys, out, strict=True) if item is not None]

    async def _fetch_one(
        self, mu: MediaUrl, counter: _ByteCounter, missing: bool, ranged: bool
    ) -> Path | RemoteObject | MediaError:
        try:
            if ranged:
                return await self._reads.open(mu, self._holding, counter.add, prefetch=True, missing=missing)
            return await self._downloader.obtain(mu, self._holding, counter.add, prefetch=True, missing=missing)
        except MediaError as error:
            return error

    def _warn_if_thrashing(self) -> None:
        holding = self._holding
        if not holding.thrashed or self._warned:
            return
        self._warned = True
        budget = self._core.budget.budget
        needed = holding.bytes_seen
        suggested = round_size(max(int(needed * 1.25), budget * 2))
        message = (
            f"the file cache ({human_size(budget)}) is too small for this operation: it downloaded "
            f"{holding.thrashed} file(s) again after evicting them itself. Set cache_size to at least "
            f"{suggested} (env MEDIATABLE_CACHE_SIZE, or mt.init(cache_size=...))."
        )
        log.warning(message)
        warnings.warn(message, CacheThrashingWarning, stacklevel=3)


class _ByteCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0

    def add(self, n: int) -> None:
        with self._lock:
            self._total += n

    def take(self) -> int:
        """Bytes added since the last call."""
        with self._lock:
            total, self._total = self._total, 0
            return total


def _local(mu: MediaUrl) -> Path:
    path = mu.local_path
    assert path is not None
    if not os.path.isfile(path):
        raise MediaNotFound(f"no such file: {path}", url=str(path))
    return path
