"""The file cache: remote media as local files, shared by every thread and process on the machine.

See :class:`FileCache` for the contract. Layout under ``settings.cache_dir`` (``<home>/file_cache``)::

    index.db                       SQLite (WAL): entries, totals, pins, reserved space, owners
    ab/<sha256(url)>.<ext>         cached files, extension kept (decoders sniff it)
    tmp/<name>.<pid>-<id>.part     downloads in progress
    locks/entries.lock             byte-range locks, one byte per URL being downloaded (Linux)
    leases/<pid>-<token>/          files a lease fetched without caching them (too big for the budget)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import logging
import os
import re
import shutil
import sqlite3
import sys
import threading
import time
import uuid
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sized
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from tqdm import tqdm

from mediatable.config import Settings
from mediatable.errors import CacheError, MediaError, MediaNotFound
from mediatable.io import fetch as _fetch
from mediatable.io.cache_index import CacheIndex, Victim, delete_rows, pick_victims
from mediatable.io.cache_info import CacheInfo, CacheThrashingWarning, Pruned, human_size, round_size
from mediatable.io.cache_locks import EntryLocks
from mediatable.io.cache_loop import EventLoop
from mediatable.io.cache_sweep import drop_dead_owners, forget_dead, reconcile, remove_leftovers
from mediatable.io.objects import ObjectInfo, ObjectStores
from mediatable.io.urls import MediaUrl, parse_url, redact_url

__all__ = ["CacheInfo", "CacheThrashingWarning", "FileCache", "Lease", "Pruned"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Hot-path bookkeeping (last access, pins) is written to the index in batches: at most this many
# pending changes or `FLUSH_SECONDS` old. One SQLite transaction per hit would cost more than
# the hit itself.
_FLUSH_EVERY = 512
# Last-access times are recorded to this resolution (seconds): a warm pass right after a cold one,
# or two passes in a row, write no access updates at all.
_ACCESS_RESOLUTION = 10.0
# A pin reaches the index once it is this old (seconds); see FileCache._apply_pending.
_PIN_DELAY = 1.0
# In-process memos (url -> file, raw string -> parsed URL) are bounded; past the bound they restart.
_MEMO_LIMIT = 200_000
_EXT = re.compile(r"\.[a-z0-9]{1,15}")


@dataclasses.dataclass(frozen=True)
class _Entry:
    """A cached file as the hot path needs it."""

    path: Path
    name: str  # str(path), for os.path.exists without a conversion
    size: int
    etag: str | None
    last_modified: float | None


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """The result of one download: a cached file, or a lease-private one (not cached)."""

    path: Path
    cached: bool
    size: int


class _Download:
    """Where the body of one download goes, decided once the size is known (see `FileCache._sink`)."""

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


class FileCache:
    """Remote media as local files: one bounded, crash-safe cache shared by threads and processes.

    **Key and layout.** One entry per normalized URL (:func:`~mediatable.io.urls.parse_url`), stored
    as ``<cache_dir>/ab/<sha256(url)>.<ext>`` with the original extension. A SQLite index (WAL mode,
    busy timeout) at ``<cache_dir>/index.db``, shared by every process on the machine, records url,
    path, size, ETag, last-modified, created and last access. ``file://`` URLs and local paths are
    read in place, never copied.

    **Single flight.** N threads and N processes asking for one uncached URL cause one download;
    the others wait and then read the finished file. In a process, requests for a URL share one
    future. Across processes, the downloader holds an exclusive lock on the URL for the whole
    transfer and until its index row is committed; a waiter takes the lock, then looks again. The
    lock is a kernel lock on one byte (at an offset from the URL's hash) of ``locks/entries.lock``
    (Linux open-file-description locks; ``flock`` of ``locks/<sha256>.lock`` elsewhere): the
    kernel drops it when its holder dies, even by SIGKILL, waiters sleep in the kernel instead of
    polling, and nothing needs a liveness check. An index row claimed atomically would instead need
    polling and a check that its owner still lives, and a lock file per entry costs a file creation
    per download.

    **Atomic publish.** A download streams into ``tmp/<name>.<pid>-<id>.part`` (same file system,
    so the final rename is atomic; one folder, so finding leftovers never walks the whole cache)
    under an exclusive ``flock``, checks the length against the announced size, renames it to its
    final name and only then writes the index row. A crash at any point leaves no visible entry.
    Opening a cache (and :meth:`prune`) removes what dead processes left: temp files, reserved
    space, pins, lease folders. A crash between rename and index write leaves a file without an
    entry: :meth:`prune` deletes it, and a later download of the URL replaces it.

    **Budget and eviction.** The bytes of all entries plus the space reserved for downloads in
    flight never exceed ``settings.cache_size`` (each process reserves space in small chunks, see
    `_reserve`). Making room evicts entries by least recent access (recorded to 10 s). Files held by
    a :class:`Lease` are pinned and never evicted: in this process exactly (in-memory refcounts),
    in other processes through a pin table (a pin is written once it is a second old, so short
    leases cost nothing; in that second the file's fresh access time keeps it away from the LRU
    end; pins of dead processes are dropped). An object larger than the budget, or one that cannot
    get room because everything is pinned, is still readable: it streams to a file private to the
    lease, is not cached, and is deleted when the lease closes. A lease keeps its recent files
    pinned up to half the budget and unpins older ones, so a scan larger than the cache works; when
    a lease downloads again files it evicted itself, a :class:`CacheThrashingWarning` names a size.

    **Freshness.** Entries record ETag, last-modified and size. With ``cache_validation='etag'`` the
    first access of a URL in each lease sends a HEAD request and downloads again when the object
    changed (a stale file is never served; an object that vanished raises MediaNotFound). With
    ``'never'`` (the default) a cached file is served without any request.

    **Speed.** Downloads run as coroutines on one event-loop thread (obstore's async API), at most
    ``settings.max_concurrent_downloads`` at once, with retries per :mod:`mediatable.io.fetch`. A
    warm hit is a dict lookup in an in-process memo checked with ``os.path.exists`` (the index is
    read on a memo miss, in batches for :meth:`Lease.get_many`); access times and pins are written
    in the background, many per transaction: a hit costs about 4 us.

    **Lifecycle.** ``FileCache(settings)`` creates the folder and index and sweeps crash leftovers;
    :meth:`lease` hands out leases (context managers) that fetch and pin files; :meth:`close` (or
    leaving a ``with`` block) closes leases, writes pending index updates and stops the download and
    index threads. All methods are thread-safe. Do not carry a FileCache across ``fork``.

    Examples:
        >>> import tempfile
        >>> from mediatable.config import load_settings
        >>> home = Path(tempfile.mkdtemp())
        >>> cache = FileCache(load_settings(home))
        >>> _ = (home / "cat.jpg").write_bytes(b"...")
        >>> with cache.lease() as lease:
        ...     path = lease.get(str(home / "cat.jpg"))   # local files are read in place
        >>> path == home / "cat.jpg"
        True
        >>> cache.info().entries
        0
        >>> cache.close()
    """

    def __init__(self, settings: Settings, stores: _fetch.Stores | None = None) -> None:
        self.settings = settings
        self.directory = Path(settings.cache_dir)
        self._root = str(self.directory)  # string paths on the download path: pathlib costs ~5 us each
        self.budget = int(settings.cache_size)
        self._stores: _fetch.Stores = stores if stores is not None else ObjectStores(settings)
        self._policy = _fetch.RetryPolicy.from_settings(settings)
        self._validate = settings.cache_validation == "etag"
        self._concurrency = max(int(settings.max_concurrent_downloads), 1)
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._pid = os.getpid()

        self._lock = threading.Lock()  # memo, pins, pending updates, stats, lease state
        self._memo: dict[str, _Entry] = {}
        self._parsed: dict[str, MediaUrl] = {}
        self._pins: dict[str, int] = {}  # url -> number of leases of this object holding it
        self._db_pinned: set[str] = set()  # urls with a row in `pins` for this owner
        self._dirty_pins: set[str] = set()
        self._pending_access: dict[str, float] = {}
        self._flush_queued = False
        self._temp_ids = itertools.count()  # unique temp names without asking the OS for randomness
        self._pinned_at: dict[str, float] = {}  # url -> when this object first pinned it (monotonic)
        self._force_pins = False
        self._published_bytes = 0  # reserved bytes now held by published entries, not yet written
        self._credit = 0  # bytes reserved in the index under `_credit_row` and not yet handed out
        self._credit_row = f"credit:{self._owner}"
        self._chunk = min(self.budget // 256, 64 * 1024**2)
        self._access_written: dict[str, float] = {}  # url -> last access time written to the index
        self._inflight: dict[str, Future[_Outcome]] = {}
        self._inflight_lock = threading.Lock()
        self._loop: EventLoop | None = None
        self._known_dirs: set[str] = set()
        self._leases: set[Lease] = set()
        self._closed = False
        self.hits = 0
        self.misses = 0
        self.bytes_downloaded = 0
        self.evictions = 0

        try:
            for folder in (self.directory, *(self.directory / name for name in ("locks", "leases", "tmp"))):
                folder.mkdir(parents=True, exist_ok=True)
            self._locks = EntryLocks(self.directory)
            self._index = CacheIndex(self.directory / "index.db", self._apply_pending)
            self._index.write(
                lambda db: db.execute(
                    "INSERT INTO owners (owner, pid, started) VALUES (?, ?, ?)", (self._owner, self._pid, time.time())
                )
            )
        except (OSError, sqlite3.Error, CacheError) as exc:
            raise CacheError(f"cannot open the file cache at {self.directory}: {exc}") from exc
        self._sweep()

    # -- public API ------------------------------------------------------------------------

    def lease(self) -> Lease:
        """A new :class:`Lease`: fetch files through it; they stay pinned until it closes.

        Examples:
            >>> with cache.lease() as lease:  # doctest: +SKIP
            ...     width = PIL.Image.open(lease.get("s3://bucket/a.jpg")).width
        """
        self._check_open()
        lease = Lease(self)
        with self._lock:
            self._leases.add(lease)
        return lease

    def info(self) -> CacheInfo:
        """Totals from the index plus this object's counters.

        Examples:
            >>> print(cache.info())  # doctest: +SKIP
            cache:      /home/me/.mediatable/file_cache
            entries:    1,000 ...
        """
        self._check_open()
        self._flush()  # publishes pending access times and pins first
        ((entries, size, reserved, pinned),) = self._index.read(
            "SELECT entries, bytes, (SELECT COALESCE(SUM(size), 0) FROM reservations),"
            " (SELECT COUNT(*) FROM entries WHERE EXISTS (SELECT 1 FROM pins WHERE pins.url = entries.url))"
            " FROM totals WHERE id = 0"
        )
        with self._lock:
            return CacheInfo(
                directory=self.directory,
                budget=self.budget,
                entries=entries,
                bytes=size,
                in_flight_bytes=reserved,
                pinned=pinned,
                hits=self.hits,
                misses=self.misses,
                bytes_downloaded=self.bytes_downloaded,
                evictions=self.evictions,
            )

    def prune(self, max_bytes: int | None = None) -> Pruned:
        """Evict least recently used entries until the cache holds at most ``max_bytes``.

        Also removes crash leftovers: entries whose file is gone, files no entry references, and the
        temp files, locks and reservations of dead processes. Pinned entries and downloads in
        progress are kept.

        Args:
            max_bytes: the target size; default the budget.

        Returns:
            What was removed.

        Examples:
            >>> cache.prune(max_bytes=10 * 1024**3)  # doctest: +SKIP
            Pruned(entries=120, bytes=9876543, orphans=0)
        """
        self._check_open()
        target = self.budget if max_bytes is None else max(int(max_bytes), 0)
        self._sweep()
        orphans = reconcile(self.directory, self._index)
        removed = 0
        freed = 0

        def evict(db: sqlite3.Connection) -> list[Victim]:
            current = db.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()[0]
            if current <= target:
                return []
            victims = pick_victims(db, current - target, self._pins) or pick_victims(db, 1, self._pins, partial=True)
            delete_rows(db, victims)
            return victims

        while True:
            victims = self._index.write(evict)
            if not victims:
                break  # at the target, or only pinned entries remain
            self._remove_files(victims)
            removed += len(victims)
            freed += sum(size for _, _, size in victims)
        return Pruned(entries=removed, bytes=freed, orphans=orphans)

    def clear(self) -> Pruned:
        """Remove every entry that is not pinned and every crash leftover.

        Examples:
            >>> cache.clear()  # doctest: +SKIP
            Pruned(entries=1000, bytes=81234567, orphans=0)
        """
        return self.prune(max_bytes=0)

    def close(self) -> None:
        """Close open leases, write pending index updates, stop the download threads."""
        if self._closed:
            return
        with self._lock:
            leases = list(self._leases)
        for lease in leases:
            lease.close()
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        self._closed = True

        def forget_me(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM reservations WHERE owner = ?", (self._owner,))
            db.execute("DELETE FROM pins WHERE owner = ?", (self._owner,))
            db.execute("DELETE FROM owners WHERE owner = ?", (self._owner,))

        with contextlib.suppress(CacheError):
            self._index.write(forget_me)
        self._index.close()

    def __enter__(self) -> FileCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- index -----------------------------------------------------------------------------

    def _lookup(self, url: str) -> _Entry | None:
        """The entry of ``url`` from the index if its file exists (memoized); heals a missing file."""
        rows = self._index.read("SELECT path, size, etag, last_modified FROM entries WHERE url = ?", (url,))
        if not rows:
            return None
        entry = self._entry(rows[0])
        if not os.path.exists(entry.name):
            path = rows[0][0]
            self._index.submit(lambda db: db.execute("DELETE FROM entries WHERE url = ? AND path = ?", (url, path)))
            return None
        self._remember(url, entry)
        return entry

    def _lookup_many(self, urls: list[str]) -> dict[str, _Entry]:
        found: dict[str, _Entry] = {}
        for start in range(0, len(urls), 500):
            chunk = urls[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._index.read(
                f"SELECT url, path, size, etag, last_modified FROM entries WHERE url IN ({marks})", chunk
            )
            for url, *rest in rows:
                entry = self._entry(rest)
                if os.path.exists(entry.name):
                    self._remember(url, entry)
                    found[url] = entry
        return found

    def _entry(self, row: Any) -> _Entry:
        path = self.directory / row[0]
        return _Entry(path, str(path), row[1], row[2], row[3])

    def _remember(self, url: str, entry: _Entry) -> None:
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[url] = entry

    def _touch_locked(self, url: str, now: float) -> None:
        """Note an access for the index (caller holds the lock), unless one was recorded just now."""
        if now - self._access_written.get(url, 0.0) >= _ACCESS_RESOLUTION:
            self._pending_access[url] = now

    def _apply_pending(self, db: sqlite3.Connection) -> bool:
        """Write batched last-access times and pin changes (runs in every index transaction).

        A pin is written once it is `_PIN_DELAY` old (or when forced by :meth:`_flush`): a lease that
        reads a batch of cached files and closes within that time costs the index nothing. Returns
        whether pins wait for their turn (the writer then runs this again soon).
        """
        now = time.monotonic()
        with self._lock:
            self._flush_queued = False
            force, self._force_pins = self._force_pins, False
            published, self._published_bytes = self._published_bytes, 0
            access = self._pending_access
            self._pending_access = {}
            dirty = self._dirty_pins
            self._dirty_pins = set()
            add, drop = [], []
            for url in dirty:
                if self._pins.get(url, 0) > 0:
                    if url in self._db_pinned:
                        continue
                    if force or now - self._pinned_at.get(url, now) >= _PIN_DELAY:
                        add.append(url)
                    else:
                        self._dirty_pins.add(url)  # not yet: next round
                elif url in self._db_pinned:
                    drop.append(url)
            waiting = bool(self._dirty_pins)
            self._db_pinned.update(add)
            self._db_pinned.difference_update(drop)
            if len(self._access_written) + len(access) > _MEMO_LIMIT:
                self._access_written.clear()
            self._access_written.update(access)
        if published:
            db.execute("UPDATE reservations SET size = size - ? WHERE id = ?", (published, self._credit_row))
        if access:
            db.executemany(
                "UPDATE entries SET last_access = ? WHERE url = ? AND last_access < ?",
                [(at, url, at) for url, at in access.items()],
            )
        if add:
            db.executemany(
                "INSERT OR IGNORE INTO pins (url, owner, pid) VALUES (?, ?, ?)",
                [(url, self._owner, self._pid) for url in add],
            )
        if drop:
            db.executemany("DELETE FROM pins WHERE url = ? AND owner = ?", [(url, self._owner) for url in drop])
        return waiting

    def _maybe_flush(self) -> None:
        """Have pending access times and pins written soon; never waits for the index.

        Past `_FLUSH_EVERY` pending changes a write is queued now, else the index's writer picks
        them up within `FLUSH_SECONDS` (or with the next download's transaction).
        """
        if len(self._pending_access) < _FLUSH_EVERY:
            self._index.kick()
        elif not self._flush_queued:
            self._flush_queued = True  # one queued write carries them all; cleared when it runs
            self._index.submit(lambda db: None)

    def _flush(self) -> None:
        """Write pending access times and all pins now."""
        with self._lock:
            self._force_pins = True
        self._index.write(lambda db: None)

    def _remove_files(self, victims: list[Victim]) -> None:
        """Delete evicted files (after their rows are gone) unless a download of the URL is running.

        A download in progress (its entry lock is held) will publish a new file under the same name;
        deleting it then would leave an entry without a file.
        """
        with self._lock:
            for url, _, _ in victims:
                self._memo.pop(url, None)
            self.evictions += len(victims)
        for url, path, _ in victims:
            digest = _digest(url)
            lock = self._locks.try_acquire(digest)
            if lock is None:
                continue
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.directory / path)
            finally:
                self._locks.release(lock, digest)

    # Space for downloads in flight is reserved in the index, where every process sees it. To keep
    # an index write out of most downloads, a process reserves a chunk of space at a time (1/256 of
    # the budget, at most 64 MiB) under one row of its own, and hands it out locally: its *credit*.
    # Publishing an entry moves its bytes from that row to the entry. Unused credit goes back when a
    # lease closes and with the cache. Each temp file also gets a row of
    # size 0 (written in the background) so that the files of a crashed process can be found.

    def _take_credit(self, size: int) -> bool:
        with self._lock:
            if self._credit < size:
                return False
            self._credit -= size
            return True

    async def _reserve(self, size: int, lease: Lease) -> bool:
        """Reserve ``size`` bytes for a download, evicting LRU entries; False when there is no room."""
        if self._take_credit(size):
            return True
        assert self._loop is not None
        async with self._loop.refill:  # one refill at a time, or 32 downloads reserve 32 chunks
            if self._take_credit(size):
                return True
            victims = None
            loop = asyncio.get_running_loop()
            for want in dict.fromkeys((max(size, self._chunk), size)):  # a chunk, else just this file
                victims = await asyncio.wrap_future(self._reserve_once(want))
                if victims is None and await loop.run_in_executor(None, self._forget_dead):
                    victims = await asyncio.wrap_future(self._reserve_once(want))  # dead processes held space
                if victims is not None:
                    with self._lock:
                        self._credit += want - size
                    break
            if victims is None:
                return False
            if victims:
                self._remove_files(victims)
                with self._lock:
                    lease._evicted.update(url for url, _, _ in victims)
        return True

    def _reserve_once(self, size: int) -> Future[list[Victim] | None]:
        """Add ``size`` bytes to this object's reservation; resolves to the evicted entries (None: no room)."""

        def reserve(db: sqlite3.Connection) -> list[Victim] | None:
            ((used,),) = db.execute(
                "SELECT bytes + (SELECT COALESCE(SUM(size), 0) FROM reservations) FROM totals WHERE id = 0"
            ).fetchall()
            excess = used + size - self.budget
            victims: list[Victim] = []
            if excess > 0:
                drop_dead_owners(db, self._pid)  # a dead process's pins must not block eviction
                victims = pick_victims(db, excess, self._pins)
                if not victims:
                    return None
                delete_rows(db, victims)
            db.execute(
                "INSERT INTO reservations (id, owner, pid, size, temp, created) VALUES (?, ?, ?, ?, '', ?)"
                " ON CONFLICT (id) DO UPDATE SET size = size + excluded.size",
                (self._credit_row, self._owner, self._pid, size, time.time()),
            )
            return victims

        return self._index.submit(reserve)

    def _unreserve(self, size: int) -> None:
        """A download that will not be published gives its space back (to this object's credit)."""
        with self._lock:
            self._credit += size

    def _return_credit(self) -> None:
        """Give unused reserved space back to the index."""
        with self._lock:
            if self._credit <= 0:
                return
            credit, self._credit = self._credit, 0

        def give_back(db: sqlite3.Connection) -> None:
            db.execute("UPDATE reservations SET size = size - ? WHERE id = ?", (credit, self._credit_row))
            db.execute("DELETE FROM reservations WHERE id = ? AND size <= 0", (self._credit_row,))

        self._index.submit(give_back)

    def _publish(self, url: str, rel: str, info: ObjectInfo) -> Future[None]:
        """Queue the index row of a renamed file (and turn its reservation into the entry)."""
        now = time.time()
        modified = _fetch.last_modified_timestamp(info.last_modified)

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
            # by _apply_pending at the end of this same transaction: other processes see the entry,
            # its pin and its bytes moved out of the reservation all at once.
            with self._lock:
                self._access_written[url] = now
                self._published_bytes += info.size

        return self._index.submit(publish)

    def _published(self, done: Future[None], lock: int, digest: str, url: str) -> None:
        """After the index row is committed: release the entry lock (other processes may read it now)."""
        self._locks.release(lock, digest)
        error = done.exception()
        if error is not None:
            with self._lock:
                self._memo.pop(url, None)
            log.warning("could not record %s in the file cache index: %s", redact_url(url), error)

    # -- crash leftovers -------------------------------------------------------------------

    def _forget_dead(self) -> bool:
        """Drop the reserved space and pins of dead processes; True if there were any."""
        return forget_dead(self._index, self._pid)

    def _sweep(self) -> None:
        """Remove what crashed processes left behind: reservations, temp files, locks, lease folders."""
        try:
            self._forget_dead()
            remove_leftovers(self.directory, self._locks, self._pid)
        except (OSError, sqlite3.Error, CacheError) as exc:
            log.warning("could not sweep the file cache at %s: %s", self.directory, exc)

    # -- fetching --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError("the file cache is closed")

    def _parse(self, url: str | MediaUrl | os.PathLike[str]) -> MediaUrl:
        if isinstance(url, MediaUrl):
            return url
        if isinstance(url, str):
            parsed = self._parsed.get(url)
            if parsed is None:
                parsed = parse_url(url)
                if len(self._parsed) >= _MEMO_LIMIT:
                    self._parsed.clear()
                self._parsed[url] = parsed
            return parsed
        return parse_url(url)

    def _run(self, coro: Coroutine[Any, Any, _T]) -> Future[_T]:
        """Schedule a coroutine on the cache's event-loop thread (started on first use)."""
        return self._run_many([coro])[0]

    def _run_many(self, coros: list[Coroutine[Any, Any, _T]]) -> list[Future[_T]]:
        with self._lock:
            if self._loop is None:
                self._check_open()
                self._loop = EventLoop(self._concurrency)
            return self._loop.submit_many(coros)

    def _hit(self, url: str, entry: _Entry, lease: Lease, prefetch: bool = False) -> Path:
        with self._lock:
            self.hits += 1
            self._touch_locked(url, time.time())
            lease._hold_locked(url, entry.size, prefetch)
        self._maybe_flush()
        return entry.path

    async def _obtain(
        self,
        mu: MediaUrl,
        lease: Lease,
        on_bytes: Callable[[int], None] | None = None,
        prefetch: bool = False,
        missing: bool = False,
    ) -> Path:
        """The local file of a remote URL: from the cache, or downloaded (once per URL at a time).

        Runs on the cache's event loop. ``prefetch``: fetched ahead for :meth:`Lease.get_many`;
        pinned outside the lease's pin window until it is handed to the consumer. ``missing``: the
        caller just looked in the index.
        """
        url = mu.url
        fresh: ObjectInfo | None = None
        if self._validate and url not in lease._validated:
            fresh = await _fetch.head_async(self._stores, mu, policy=self._policy)
            with self._lock:
                lease._validated.add(url)
        private = lease._private.get(url)
        if private is not None and fresh is None:
            return private
        if not (missing and fresh is None):
            entry = self._memo.get(url)
            if entry is None or not os.path.exists(entry.name):
                entry = self._lookup(url)
            if entry is not None and (fresh is None or _same_version(entry, fresh)):
                return self._hit(url, entry, lease, prefetch)
        return await self._shared_download(mu, lease, fresh, on_bytes, prefetch)

    async def _shared_download(
        self,
        mu: MediaUrl,
        lease: Lease,
        fresh: ObjectInfo | None,
        on_bytes: Callable[[int], None] | None,
        prefetch: bool,
    ) -> Path:
        url = mu.url
        while True:
            with self._inflight_lock:
                future = self._inflight.get(url)
                leader = future is None
                if future is None:
                    future = self._inflight[url] = Future()
            if leader:
                break
            try:
                outcome = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if future.cancelled() and not (task is not None and task.cancelling()):
                    continue  # the leader was cancelled, not us: download it ourselves
                raise
            if outcome.cached:
                return self._hit(url, self._memo.get(url) or _entry_of(outcome), lease, prefetch)
            try:
                return lease._adopt(url, outcome.path)
            except OSError:  # the other lease already closed
                return (await self._download(mu, lease, fresh, on_bytes, prefetch)).path
        try:
            outcome = await self._download(mu, lease, fresh, on_bytes, prefetch)
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
                self._inflight.pop(url, None)
        return outcome.path

    async def _download(
        self,
        mu: MediaUrl,
        lease: Lease,
        fresh: ObjectInfo | None,
        on_bytes: Callable[[int], None] | None,
        prefetch: bool,
    ) -> _Outcome:
        url = mu.url
        digest = _digest(url)
        ext = mu.extension if _EXT.fullmatch(mu.extension) else ""
        rel = f"{digest[:2]}/{digest}{ext}"
        final_name = f"{self._root}/{rel}"
        lock = await self._locks.acquire_async(digest)
        keep_lock = False  # handed over to the index write that publishes the entry
        try:
            # Another process (or thread of another cache object) may have finished it meanwhile;
            # it renames the file before it writes the row, so no file means no entry.
            entry = self._lookup(url) if os.path.exists(final_name) else None
            if entry is not None and (fresh is None or _same_version(entry, fresh)):
                self._hit(url, entry, lease, prefetch)
                return _Outcome(entry.path, True, entry.size)
            if digest[:2] not in self._known_dirs:
                os.makedirs(f"{self._root}/{digest[:2]}", exist_ok=True)
                self._known_dirs.add(digest[:2])
            with self._lock:
                self.misses += 1
                if url in lease._evicted:
                    lease._thrashed += 1
            state = _Download(self._root)

            def counted(n: int) -> None:
                with self._lock:
                    self.bytes_downloaded += n
                if on_bytes is not None:
                    on_bytes(n)

            try:
                async with self._loop_gate():  # at most max_concurrent_downloads transfers at once
                    info = await _fetch.fetch_async(
                        self._stores,
                        mu,
                        lambda info: self._sink(state, url, rel, ext, info, lease),
                        policy=self._policy,
                        on_bytes=counted,
                    )
                assert state.file is not None
                state.file.close()
                state.file = None
                if state.temp is not None and state.reserved:
                    os.replace(f"{self._root}/{state.temp}", final_name)
                    state.temp = None
                    final = Path(final_name)
                    with self._lock:
                        lease._hold_locked(url, info.size, prefetch)
                    self._remember(url, _Entry(final, final_name, info.size, info.etag, None))
                    # The file is complete: this process may use it at once. Other processes wait
                    # on the entry lock until the index row is committed, so the lock goes with
                    # the (group-committed) index write instead of making this thread wait.
                    published = self._publish(url, rel, info)
                    state.reserved = False
                    keep_lock = True
                    published.add_done_callback(lambda done: self._published(done, lock, digest, url))
                    return _Outcome(final, True, info.size)
                assert state.private is not None
                private = state.private
                state.private = None
                with self._lock:
                    lease._private[url] = private
                return _Outcome(private, False, info.size)
            except MediaError:
                raise
            except OSError as exc:
                raise CacheError(f"cannot write to the file cache at {self.directory}: {exc}") from exc
            finally:
                state.discard_file()
                if state.reserved:
                    self._unreserve(state.size)
        finally:
            if not keep_lock:
                self._locks.release(lock, digest)

    def _loop_gate(self) -> asyncio.Semaphore:
        assert self._loop is not None
        return self._loop.gate

    async def _sink(self, state: _Download, url: str, rel: str, ext: str, info: ObjectInfo, lease: Lease) -> BinaryIO:
        """Choose the file for one attempt: a reserved temp file in the cache, or a lease-private file."""
        if state.file is not None and state.size == info.size:
            return state.file  # a retry of the same object: same reservation, same file
        state.discard_file()
        if state.reserved:
            self._unreserve(state.size)
            state.reserved = False
        state.size = info.size
        temp = f"tmp/{rel[3:]}.{self._pid}-{self._owner[-12:]}{next(self._temp_ids):x}.part"
        state.reserved = info.size <= self.budget and await self._reserve(info.size, lease)
        if state.reserved:
            fd = os.open(f"{self._root}/{temp}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)  # tells sweepers in other processes that the writer lives
            state.temp = temp
            state.file = os.fdopen(fd, "w+b", buffering=0)  # chunks are large: no copy into a buffer
        else:
            if info.size > self.budget:
                log.info("%s (%s) is larger than the cache: not cached", redact_url(url), human_size(info.size))
            state.private = lease._private_path(url, ext)
            state.file = open(state.private, "w+b", buffering=0)  # noqa: SIM115 - closed by the caller
        return state.file

    def _show_progress(self, progress: bool | None) -> bool:
        if progress is not None:
            return progress
        if self.settings.progress is not None:
            return self.settings.progress
        return sys.stderr is not None and sys.stderr.isatty()


class Lease:
    """Files fetched through a lease stay pinned (never evicted) until it closes.

    Get one from :meth:`FileCache.lease` and use it as a context manager. All methods are
    thread-safe: the execution pipeline prefetches with :meth:`get_many` on one thread while compute
    threads call :meth:`get`. A lease pins its most recent files up to half the cache's budget and
    unpins older ones beyond that, so one lease can stream over more data than the cache holds.
    Objects too big for the cache are kept in a folder private to the lease and deleted when it
    closes.

    Examples:
        >>> with cache.lease() as lease:  # doctest: +SKIP
        ...     for path in lease.get_many(["s3://b/1.jpg", "s3://b/2.jpg"]):
        ...         print(path)
    """

    def __init__(self, cache: FileCache) -> None:
        self._cache = cache
        self._token = uuid.uuid4().hex[:12]
        # Pins: files handed out (url -> size, oldest first; unpinned beyond the cap), and files
        # fetched ahead by get_many but not handed out yet (always pinned).
        self._held: OrderedDict[str, int] = OrderedDict()
        self._held_bytes = 0
        self._prefetched: dict[str, int] = {}
        self._pin_cap = max(cache.budget // 2, 1)
        self._private: dict[str, Path] = {}
        self._private_dir: Path | None = None
        self._private_lock: int | None = None
        self._validated: set[str] = set()
        self._evicted: set[str] = set()
        self._seen: dict[str, int] = {}
        self._thrashed = 0
        self._warned = False
        self._closed = False

    def get(self, url: str | MediaUrl | os.PathLike[str]) -> Path:
        """The local path of a media URL, downloading it on a miss.

        Args:
            url: any URL :func:`~mediatable.io.urls.parse_url` accepts, or a local path.

        Returns:
            A path that stays valid until the lease closes (local files: their own path).

        Raises:
            MediaError: the object cannot be fetched (MediaNotFound, MediaAccessDenied, ...).
            UnsupportedScheme: ``url`` is not a media URL.
            CacheError: the cache folder cannot be written.

        Examples:
            >>> with cache.lease() as lease:  # doctest: +SKIP
            ...     lease.get("https://example.com/cat.jpg")
            PosixPath('/home/me/.mediatable/file_cache/3f/3f0a....jpg')
        """
        if self._closed:
            raise CacheError("this cache lease is closed")
        cache = self._cache
        mu = cache._parse(url)
        if mu.kind == "file":
            return _local(mu)
        key = mu.url
        if not cache._validate or key in self._validated:
            entry = cache._memo.get(key)
            if entry is not None and key in self._held and os.path.exists(entry.name):
                with cache._lock:
                    cache.hits += 1
                    cache._touch_locked(key, time.time())
                cache._maybe_flush()
                return entry.path
            if entry is not None and os.path.exists(entry.name):
                return cache._hit(key, entry, self)
        self._check_open()
        path = cache._run(cache._obtain(mu, self)).result()
        self._warn_if_thrashing()
        return path

    def get_many(
        self, urls: Iterable[str | MediaUrl | os.PathLike[str]], *, progress: bool | None = None
    ) -> Iterator[Path | MediaError]:
        """Fetch many URLs with bounded concurrency; yield each result in input order as soon as it is ready.

        Up to ``settings.max_concurrent_downloads`` downloads run at once on the cache's threads,
        while the caller works on earlier results. A URL that appears twice is downloaded once. A
        failure yields that position's :class:`~mediatable.errors.MediaError` (its message names the
        redacted URL and the HTTP status) and the other URLs proceed.

        Args:
            urls: media URLs or local paths.
            progress: show a progress bar (objects and bytes) on stderr; default ``settings.progress``,
                and when that is None, only if stderr is a terminal.

        Yields:
            A local path, or the error of that URL.

        Raises:
            UnsupportedScheme: an item is not a media URL.
            CacheError: the cache folder cannot be written.

        Examples:
            >>> with cache.lease() as lease:  # doctest: +SKIP
            ...     widths = [PIL.Image.open(p).width for p in lease.get_many(urls)]
        """
        self._check_open()
        cache = self._cache
        total = len(urls) if isinstance(urls, Sized) else None
        bar = tqdm(
            total=total,
            desc="Fetching media",
            unit=" objects",
            file=sys.stderr,
            disable=not cache._show_progress(progress),
            mininterval=0.2,
            dynamic_ncols=True,
        )
        counter = _ByteCounter()
        window: deque[tuple[str | None, Path | MediaError | Future[Path | MediaError]]] = deque()
        limit = max(4 * cache._concurrency, 64)
        source = iter(urls)
        exhausted = False
        try:
            while True:
                if not exhausted and len(window) <= limit // 2:
                    batch = list(itertools.islice(source, limit - len(window)))
                    exhausted = not batch
                    window.extend(self._start(batch, counter))
                if not window:
                    break
                url, item = window.popleft()
                if isinstance(item, Future):
                    item = item.result()
                if url is not None and isinstance(item, Path):
                    with cache._lock:
                        self._hand_out_locked(url)
                if not bar.disable:
                    bar.set_postfix_str(human_size(counter.total), refresh=False)
                    bar.update(1)
                self._warn_if_thrashing()
                yield item
        finally:
            for _, pending in window:
                if isinstance(pending, Future):
                    pending.cancel()
            bar.close()

    def release(self, url: str | MediaUrl | os.PathLike[str]) -> None:
        """Unpin one URL before the lease closes (and delete it if it was too big to cache).

        Examples:
            >>> lease.release("s3://bucket/a.jpg")  # doctest: +SKIP
        """
        cache = self._cache
        key = cache._parse(url).url
        with cache._lock:
            size = self._held.pop(key, None)
            if size is not None:
                self._held_bytes -= size
            if self._prefetched.pop(key, None) is not None or size is not None:
                _unpin_locked(cache, key)
            private = self._private.pop(key, None)
        if private is not None:
            with contextlib.suppress(OSError):
                private.unlink()
        cache._maybe_flush()

    def close(self) -> None:
        """Unpin everything, delete the lease's private files, publish the unpinning to the index."""
        cache = self._cache
        with cache._lock:
            if self._closed:
                return
            self._closed = True
            for key in itertools.chain(self._held, self._prefetched):
                _unpin_locked(cache, key)
            self._held.clear()
            self._prefetched.clear()
            self._held_bytes = 0
            self._private.clear()
            cache._leases.discard(self)
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
        if self._private_lock is not None:
            os.close(self._private_lock)
            self._private_lock = None
        if not cache._closed:
            cache._return_credit()
            cache._flush()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError("this cache lease is closed")
        self._cache._check_open()

    def _start(
        self, batch: list[Any], counter: _ByteCounter
    ) -> list[tuple[str | None, Path | MediaError | Future[Path | MediaError]]]:
        """Resolve hits at once (one index query for the batch); send misses to the download threads.

        Returns (remote url or None, result or future) in input order.
        """
        cache = self._cache
        keys: list[str | None] = []
        out: list[Path | MediaError | Future[Path | MediaError] | None] = []
        misses: list[tuple[int, MediaUrl]] = []
        hits: list[tuple[str, _Entry]] = []
        exists = os.path.exists
        for raw in batch:
            mu = cache._parse(raw)
            if mu.kind == "file":
                keys.append(None)
                try:
                    out.append(_local(mu))
                except MediaError as error:
                    out.append(error)
                continue
            keys.append(mu.url)
            entry = None if cache._validate and mu.url not in self._validated else cache._memo.get(mu.url)
            if entry is not None and exists(entry.name):
                hits.append((mu.url, entry))
                out.append(entry.path)
                continue
            misses.append((len(out), mu))
            out.append(None)
        if misses and not cache._validate:
            found = cache._lookup_many([mu.url for _, mu in misses])
            still: list[tuple[int, MediaUrl]] = []
            for index, mu in misses:
                entry = found.get(mu.url)
                if entry is not None:
                    hits.append((mu.url, entry))
                    out[index] = entry.path
                else:
                    still.append((index, mu))
            misses = still
        if hits:  # one lock round for the whole batch: this is the warm path
            now = time.time()
            with cache._lock:
                cache.hits += len(hits)
                for url, entry in hits:
                    cache._touch_locked(url, now)
                    self._hold_locked(url, entry.size, prefetch=True)
            cache._maybe_flush()
        if misses:  # one hand-over to the event loop for the whole batch
            futures = cache._run_many([self._fetch_one(mu, counter, not cache._validate) for _, mu in misses])
            for (index, _), future in zip(misses, futures, strict=True):
                out[index] = future
        return [(key, item) for key, item in zip(keys, out, strict=True) if item is not None]

    async def _fetch_one(self, mu: MediaUrl, counter: _ByteCounter, missing: bool) -> Path | MediaError:
        try:
            return await self._cache._obtain(mu, self, counter.add, prefetch=True, missing=missing)
        except MediaError as error:
            return error

    def _hold_locked(self, url: str, size: int, prefetch: bool = False) -> None:
        """Pin ``url`` for this lease (caller holds the cache lock).

        A prefetched file stays pinned until :meth:`_hand_out_locked`; a handed-out one joins the
        window of recent files, whose oldest members are unpinned beyond the cap.
        """
        if url not in self._seen:
            self._seen[url] = size
        if url in self._prefetched:
            if not prefetch:
                self._hand_out_locked(url)
            return
        if url in self._held:
            if prefetch:  # wanted again further down a get_many: keep it out of the window
                self._held_bytes -= self._held.pop(url)
                self._prefetched[url] = size
            else:
                self._held.move_to_end(url)
            return
        cache = self._cache
        count = cache._pins.get(url, 0)
        cache._pins[url] = count + 1
        if count == 0:
            cache._dirty_pins.add(url)
            cache._pinned_at[url] = time.monotonic()
        if prefetch:
            self._prefetched[url] = size
        else:
            self._add_to_window_locked(url, size)

    def _hand_out_locked(self, url: str) -> None:
        """A prefetched file reaches the consumer: it joins the window of recent files."""
        size = self._prefetched.pop(url, None)
        if size is not None:
            self._add_to_window_locked(url, size)
        elif url in self._held:
            self._held.move_to_end(url)

    def _add_to_window_locked(self, url: str, size: int) -> None:
        self._held[url] = size
        self._held_bytes += size
        while self._held_bytes > self._pin_cap and len(self._held) > 1:
            old, old_size = self._held.popitem(last=False)
            self._held_bytes -= old_size
            _unpin_locked(self._cache, old)

    def _private_path(self, url: str, ext: str) -> Path:
        with self._cache._lock:
            if self._private_dir is None:
                folder = self._cache.directory / "leases" / f"{os.getpid()}-{self._token}"
                folder.mkdir(parents=True, exist_ok=True)
                lock = folder / ".lock"
                fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)  # held until the lease closes: sweepers keep out
                self._private_lock = fd
                self._private_dir = folder
            return self._private_dir / f"{_digest(url)}-{uuid.uuid4().hex[:6]}{ext}"

    def _adopt(self, url: str, other: Path) -> Path:
        """Share a file another lease fetched without caching: a hard link in this lease's folder."""
        existing = self._private.get(url)
        if existing is not None:
            return existing
        mine = self._private_path(url, other.suffix)
        os.link(other, mine)
        with self._cache._lock:
            self._private[url] = mine
        return mine

    def _warn_if_thrashing(self) -> None:
        if not self._thrashed or self._warned:
            return
        self._warned = True
        cache = self._cache
        needed = sum(self._seen.values())
        suggested = round_size(max(int(needed * 1.25), cache.budget * 2))
        message = (
            f"the file cache ({human_size(cache.budget)}) is too small for this operation: it downloaded "
            f"{self._thrashed} file(s) again after evicting them itself. Set cache_size to at least "
            f"{suggested} (env MEDIATABLE_CACHE_SIZE, or mt.init(cache_size=...))."
        )
        log.warning(message)
        warnings.warn(message, CacheThrashingWarning, stacklevel=3)


class _ByteCounter:
    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.total += n


def _unpin_locked(cache: FileCache, url: str) -> None:
    count = cache._pins.get(url, 0) - 1
    if count <= 0:
        cache._pins.pop(url, None)
        cache._pinned_at.pop(url, None)
        cache._dirty_pins.add(url)
    else:
        cache._pins[url] = count


def _local(mu: MediaUrl) -> Path:
    path = mu.local_path
    assert path is not None
    if not os.path.isfile(path):
        raise MediaNotFound(f"no such file: {path}", url=str(path))
    return path


def _entry_of(outcome: _Outcome) -> _Entry:
    return _Entry(outcome.path, str(outcome.path), outcome.size, None, None)


def _same_version(entry: _Entry, info: ObjectInfo) -> bool:
    """Whether a cached entry is the object ``info`` describes (ETag first, else size and mtime)."""
    if entry.etag and info.etag:
        return entry.etag == info.etag and entry.size == info.size
    if entry.size != info.size:
        return False
    modified = _fetch.last_modified_timestamp(info.last_modified)
    return entry.last_modified is None or modified is None or abs(entry.last_modified - modified) < 1.0


def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()
