"""The shared state of one open file cache, and how a lease is served a cached file.

:class:`Core` is what a :class:`~mediatable.io.cache.cache.FileCache` owns and its leases use: the
index, locks, pins, budget, memo and transfer stage of one cache folder in this process. It is
private to the package; users see ``FileCache`` and ``Lease``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from mediatable.config import Settings, create_home
from mediatable.errors import CacheError
from mediatable.io import fetch
from mediatable.io.cache.budget import Budget
from mediatable.io.cache.entries import MEMO_LIMIT, Entry, Memo, digest
from mediatable.io.cache.holding import Holding
from mediatable.io.cache.index import CacheIndex, Row, Victim
from mediatable.io.cache.locks import EntryLocks, LockSet
from mediatable.io.cache.pins import FLUSH_EVERY, AccessTimes, Pins
from mediatable.io.cache.sweep import OWNER_LOCKS, PIN_LOCKS, forget_dead, remove_leftovers
from mediatable.io.transfer import ProgressBars, TransferStage
from mediatable.io.urls import MediaUrl, UrlPolicy, parse_url

__all__ = ["Core", "Stats"]

log = logging.getLogger("mediatable.io.cache")


class Stats:
    """What this cache object did: misses, bytes downloaded, evictions (hits are counted with access times)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.misses = 0
        self.bytes_downloaded = 0
        self.evictions = 0

    def add(self, misses: int = 0, nbytes: int = 0, evictions: int = 0) -> None:
        with self._lock:
            self.misses += misses
            self.bytes_downloaded += nbytes
            self.evictions += evictions


class Core:
    """Index, locks, pins, budget, memo and transfer stage of one cache folder in this process.

    Lifecycle: created by ``FileCache`` (which sweeps crash leftovers right after), closed by it
    after its leases; the owner lock taken here marks everything this object leaves in the folder
    as alive until :meth:`close` or the process's death.
    """

    def __init__(
        self,
        settings: Settings,
        stores: fetch.Stores,
        stage: TransferStage,
        progress_bars: ProgressBars | None,
    ) -> None:
        self.settings = settings
        self.directory = Path(settings.cache_dir)
        self.root = str(self.directory)  # string paths on the download path: pathlib costs ~5 us each
        self.stores = stores
        self.stage = stage
        self.progress_bars = progress_bars
        self.url_policy = UrlPolicy.from_settings(settings)
        self.validate = settings.cache_validation == "etag"
        self.owner = uuid.uuid4().hex[:16]
        self.memo = Memo()
        self._parsed: dict[str, MediaUrl] = {}
        self.access = AccessTimes()
        self.stats = Stats()
        self.closed = False
        self._flush_queued = False
        create_home(settings.home)
        for folder in (self.directory, *(self.directory / name for name in ("locks", "leases", "tmp"))):
            folder.mkdir(parents=True, exist_ok=True)
        self.lock_folder = self.directory / "locks"
        self._owner_lock = LockSet(self.lock_folder, OWNER_LOCKS)
        self._owner_lock.add(self.owner, shared=False)
        self.locks = EntryLocks(self.directory)
        self.pins = Pins(self.lock_folder)
        self.index = CacheIndex(self.directory / "index.db", self._write_pending)
        self.budget = Budget(
            self.index, int(settings.cache_size), self.owner, self.pins.counts, self.lock_folder, self.remove_files
        )
        self.index.write(
            lambda db: db.execute(
                "INSERT INTO owners (owner, pid, started) VALUES (?, ?, ?)", (self.owner, os.getpid(), time.time())
            )
        )

    # -- URLs and entries ------------------------------------------------------------------

    def check_open(self) -> None:
        if self.closed:
            raise CacheError("the file cache is closed")

    def parse(self, url: str | MediaUrl | os.PathLike[str]) -> MediaUrl:
        """The parsed URL (memoized for strings); raises when the URL policy refuses it."""
        if isinstance(url, MediaUrl):
            self.url_policy.check(url)
            return url
        if isinstance(url, str):
            parsed = self._parsed.get(url)
            if parsed is None:
                parsed = parse_url(url)
                self.url_policy.check(parsed)
                if len(self._parsed) >= MEMO_LIMIT:
                    self._parsed.clear()
                self._parsed[url] = parsed
            return parsed
        parsed = parse_url(url)
        self.url_policy.check(parsed)
        return parsed

    def lookup(self, url: str) -> Entry | None:
        """The entry of ``url`` in the index (memoized), not yet checked against its file."""
        rows = self.index.read("SELECT path, size, etag, last_modified FROM entries WHERE url = ?", (url,))
        if not rows:
            return None
        entry = Entry.at(self.directory, *rows[0])
        self.memo.remember(url, entry)
        return entry

    def lookup_with(self, url: str, related: tuple[str, str] | None) -> tuple[Entry | None, list[Row]]:
        """:meth:`lookup`, and in the same query the rows of the keys in ``[low, high)`` (``url``'s own excluded).

        One query instead of two on every miss (a whole download also looks for the object's
        blocks): each query is a read transaction of its own (17 us for one against 26 us for two).
        """
        if related is None:
            return self.lookup(url), []
        rows: list[Row] = self.index.read(
            "SELECT url, path, size, etag, last_modified, created FROM entries WHERE url = ?"
            " UNION ALL SELECT url, path, size, etag, last_modified, created FROM entries WHERE url >= ? AND url < ?",
            (url, *related),
        )  # UNION ALL, not OR: SQLite dedupes an OR through a temporary index (a third slower)
        entry: Entry | None = None
        others: list[Row] = []
        for row in rows:
            if row[0] != url:
                others.append(row)
            elif entry is None:
                entry = Entry.at(self.directory, row[1], row[2], row[3], row[4])
                self.memo.remember(url, entry)
        return entry, others

    def lookup_many(self, urls: list[str]) -> dict[str, Entry]:
        """:meth:`lookup` for many URLs, a few queries in all."""
        found: dict[str, Entry] = {}
        for start in range(0, len(urls), 500):
            chunk = urls[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.index.read(
                f"SELECT url, path, size, etag, last_modified FROM entries WHERE url IN ({marks})", chunk
            )
            for url, *rest in rows:
                entry = Entry.at(self.directory, *rest)
                self.memo.remember(url, entry)
                found[url] = entry
        return found

    def serve(
        self, url: str, entry: Entry, holding: Holding, prefetch: bool = False, windowed: bool = False
    ) -> Path | None:
        """Hand a cached file to a lease: pin it there, then check the file; None if it cannot be used.

        Pinning comes first: once pinned, no process can delete the file; a file found intact after
        that stays intact (short of someone outside the cache changing it). A file that is gone or
        has the wrong size (truncated, rewritten behind the cache's back) drops its entry, so the
        caller downloads the object again. ``prefetch``/``windowed``: how the lease holds it
        (:meth:`~mediatable.io.cache.holding.Holding.hold`).
        """
        if not holding.hold(url, entry.size, prefetch, windowed):
            return None  # an evictor is deleting it right now
        if not self._intact(url, entry):
            holding.release(url)
            return None
        self.access.hit((url,), time.time())
        self.maybe_flush()
        return entry.path

    def serve_many(self, hits: Iterable[tuple[str, Entry]], holding: Holding) -> dict[str, Path]:
        """:meth:`serve` (prefetched) for a batch; returns the URLs served."""
        served: dict[str, Path] = {}
        for url, entry in hits:
            if holding.hold(url, entry.size, prefetch=True):
                if self._intact(url, entry):
                    served[url] = entry.path
                else:
                    holding.release(url)
        if served:
            self.access.hit(served, time.time())
            self.maybe_flush()
        return served

    def _intact(self, url: str, entry: Entry) -> bool:
        try:
            if os.stat(entry.name).st_size == entry.size:
                return True
        except FileNotFoundError:
            pass
        self.memo.pop(url, None)
        rel = os.path.relpath(entry.name, self.root)
        # Only the row this entry came from: a newer download may have reused the name meanwhile
        # (its row has its own size), and this process's memo may be older than the index.
        self.index.submit(
            lambda db: db.execute("DELETE FROM entries WHERE url = ? AND path = ? AND size = ?", (url, rel, entry.size))
        )
        log.info("cached file %s is missing or damaged: dropped, it will be downloaded again", entry.name)
        return False

    def drop_damaged(self, key: str, path: Path) -> None:
        """Forget an entry whose file failed a content check, and delete the file (nobody can use it).

        The caller holds the entry pinned, so no new download can have taken the file's name yet.
        """
        self.memo.pop(key, None)
        rel = os.path.relpath(path, self.root)
        self.index.write(lambda db: db.execute("DELETE FROM entries WHERE url = ? AND path = ?", (key, rel)))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    # -- bookkeeping -----------------------------------------------------------------------

    def _write_pending(self, db: sqlite3.Connection) -> bool:
        """Write batched bookkeeping (runs at the end of every index transaction)."""
        self._flush_queued = False
        self.budget.write(db)
        self.access.write(db)
        return False

    def maybe_flush(self) -> None:
        """Have pending access times written soon; never waits for the index.

        Past `FLUSH_EVERY` pending access times a write is queued now, else the index's writer picks
        them up within `FLUSH_SECONDS` (or with the next download's transaction).
        """
        if self.access.pending() < FLUSH_EVERY:
            self.index.kick()
        elif not self._flush_queued:
            self._flush_queued = True  # one queued write carries them all; cleared when it runs
            self.index.submit(lambda db: None)

    def flush(self) -> None:
        """Write pending access times now."""
        self.index.write(lambda db: None)

    def remove_files(self, victims: list[Victim], unpinned_only: bool = False) -> None:
        """Delete evicted files (their rows are gone; the evictor holds their pin keys).

        Skipped while a download of the URL is running (its entry lock is held): it may have just
        renamed a new file to the same name, which the coming index row will reference.
        ``unpinned_only``: the caller holds no pin keys; files a lease holds stay (``prune`` takes
        them once they are free).
        """
        for url, _, _ in victims:
            self.memo.pop(url, None)
        self.stats.add(evictions=len(victims))
        with LockSet(self.lock_folder, PIN_LOCKS) as evicting:
            for url, path, _ in victims:
                url_digest = digest(url)
                if unpinned_only and not (self.pins.counts.get(url, 0) == 0 and evicting.add(url_digest, shared=False)):
                    continue
                lock = self.locks.try_acquire(url_digest)
                if lock is None:
                    continue
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.directory / path)
                finally:
                    self.locks.release(lock, url_digest)

    def remove_if_unpinned(self, url: str, rel: str) -> None:
        """Delete a file no entry references any more, unless a lease somewhere still reads it.

        The caller holds the URL's entry lock. A pinned file stays until ``prune`` finds it unpinned.
        """
        with LockSet(self.lock_folder, PIN_LOCKS) as evicting:
            if self.pins.counts.get(url, 0) == 0 and evicting.add(digest(url), shared=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.root}/{rel}")

    # -- crash leftovers -------------------------------------------------------------------

    def sweep(self) -> None:
        """Remove what dead cache objects left behind: reservations, owner rows, temp files, lease folders."""
        try:
            self.index.write(lambda db: forget_dead(db, self.lock_folder, self.owner))
            remove_leftovers(self.directory)
        except (OSError, sqlite3.Error, CacheError) as exc:
            log.warning("could not sweep the file cache at %s: %s", self.directory, exc)

    def close(self) -> None:
        """Forget this owner in the index and close it (leases and transfers are stopped first)."""

        def forget_me(db: sqlite3.Connection) -> None:
            self.budget.forget(db)
            db.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))

        with contextlib.suppress(CacheError):
            self.index.write(forget_me)
        self.index.close()
        self.pins.close()
        self._owner_lock.close()
