"""The shared state of one open file cache, and the lookup-or-download path every lease goes through.

:class:`Core` is what a :class:`~mediatable.io.cache.cache.FileCache` owns and its leases use: the
index, locks, pins, budget and downloader of one cache folder in this process. It is private to
the package; users see ``FileCache`` and ``Lease``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from mediatable.config import Settings
from mediatable.errors import CacheError
from mediatable.io import fetch
from mediatable.io.cache.budget import Budget
from mediatable.io.cache.entries import MEMO_LIMIT, Entry, Memo, digest, same_version
from mediatable.io.cache.holding import Holding
from mediatable.io.cache.index import CacheIndex, Victim
from mediatable.io.cache.locks import EntryLocks
from mediatable.io.cache.pins import FLUSH_EVERY, AccessTimes, Pins
from mediatable.io.cache.sweep import forget_dead, remove_leftovers
from mediatable.io.objects import ObjectInfo
from mediatable.io.transfer import ProgressBars, TransferStage
from mediatable.io.urls import MediaUrl, parse_url

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
    """Index, locks, pins, budget, memo and transfer stage of one cache folder in this process."""

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
        self.validate = settings.cache_validation == "etag"
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.pid = os.getpid()
        self.memo = Memo()
        self._parsed: dict[str, MediaUrl] = {}
        self.pins = Pins(self.owner, self.pid)
        self.access = AccessTimes()
        self.stats = Stats()
        self.closed = False
        self._flush_queued = False
        for folder in (self.directory, *(self.directory / name for name in ("locks", "leases", "tmp"))):
            folder.mkdir(parents=True, exist_ok=True)
        self.locks = EntryLocks(self.directory)
        self.index = CacheIndex(self.directory / "index.db", self._write_pending)
        self.budget = Budget(
            self.index, int(settings.cache_size), self.owner, self.pid, self.pins.counts, self.forget_dead
        )
        self.index.write(
            lambda db: db.execute(
                "INSERT INTO owners (owner, pid, started) VALUES (?, ?, ?)", (self.owner, self.pid, time.time())
            )
        )

    # -- URLs and entries ------------------------------------------------------------------

    def check_open(self) -> None:
        if self.closed:
            raise CacheError("the file cache is closed")

    def parse(self, url: str | MediaUrl | os.PathLike[str]) -> MediaUrl:
        if isinstance(url, MediaUrl):
            return url
        if isinstance(url, str):
            parsed = self._parsed.get(url)
            if parsed is None:
                parsed = parse_url(url)
                if len(self._parsed) >= MEMO_LIMIT:
                    self._parsed.clear()
                self._parsed[url] = parsed
            return parsed
        return parse_url(url)

    def lookup(self, url: str) -> Entry | None:
        """The entry of ``url`` from the index if its file exists (memoized); heals a missing file."""
        rows = self.index.read("SELECT path, size, etag, last_modified FROM entries WHERE url = ?", (url,))
        if not rows:
            return None
        entry = Entry.at(self.directory, *rows[0])
        if not os.path.exists(entry.name):
            path = rows[0][0]
            self.index.submit(lambda db: db.execute("DELETE FROM entries WHERE url = ? AND path = ?", (url, path)))
            return None
        self.memo.remember(url, entry)
        return entry

    def lookup_many(self, urls: list[str]) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for start in range(0, len(urls), 500):
            chunk = urls[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.index.read(
                f"SELECT url, path, size, etag, last_modified FROM entries WHERE url IN ({marks})", chunk
            )
            for url, *rest in rows:
                entry = Entry.at(self.directory, *rest)
                if os.path.exists(entry.name):
                    self.memo.remember(url, entry)
                    found[url] = entry
        return found

    def cached(self, url: str, fresh: ObjectInfo | None) -> Entry | None:
        """The usable entry of ``url`` (memo, else index), if any and (when ``fresh`` is known) current."""
        entry = self.memo.get(url)
        if entry is None or not os.path.exists(entry.name):
            entry = self.lookup(url)
        if entry is not None and (fresh is None or same_version(entry, fresh)):
            return entry
        return None

    def hit(self, url: str, entry: Entry, holding: Holding, prefetch: bool = False) -> Path:
        """Serve a cached file to a lease: pin it there and note the access."""
        self.access.hit((url,), time.time())
        holding.hold(url, entry.size, prefetch)
        self.maybe_flush()
        return entry.path

    # -- bookkeeping -----------------------------------------------------------------------

    def _write_pending(self, db: sqlite3.Connection) -> bool:
        """Write batched bookkeeping (runs at the end of every index transaction); True: pins wait."""
        self._flush_queued = False
        self.budget.write(db)
        self.access.write(db)
        return self.pins.write(db)

    def maybe_flush(self) -> None:
        """Have pending access times and pins written soon; never waits for the index.

        Past `FLUSH_EVERY` pending access times a write is queued now, else the index's writer picks
        them up within `FLUSH_SECONDS` (or with the next download's transaction).
        """
        if self.access.pending() < FLUSH_EVERY:
            self.index.kick()
        elif not self._flush_queued:
            self._flush_queued = True  # one queued write carries them all; cleared when it runs
            self.index.submit(lambda db: None)

    def flush(self) -> None:
        """Write pending access times and all pins now."""
        self.pins.publish_all()
        self.index.write(lambda db: None)

    def remove_files(self, victims: list[Victim]) -> None:
        """Delete evicted files (after their rows are gone) unless a download of the URL is running.

        A download in progress (its entry lock is held) will publish a new file under the same name;
        deleting it then would leave an entry without a file.
        """
        for url, _, _ in victims:
            self.memo.pop(url, None)
        self.stats.add(evictions=len(victims))
        for url, path, _ in victims:
            url_digest = digest(url)
            lock = self.locks.try_acquire(url_digest)
            if lock is None:
                continue
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.directory / path)
            finally:
                self.locks.release(lock, url_digest)

    # -- crash leftovers -------------------------------------------------------------------

    def forget_dead(self) -> bool:
        """Drop the reserved space and pins of dead processes; True if there were any."""
        return forget_dead(self.index, self.pid)

    def sweep(self) -> None:
        """Remove what crashed processes left behind: reservations, temp files, locks, lease folders."""
        try:
            self.forget_dead()
            remove_leftovers(self.directory, self.locks, self.pid)
        except (OSError, sqlite3.Error, CacheError) as exc:
            log.warning("could not sweep the file cache at %s: %s", self.directory, exc)

    def close(self) -> None:
        """Forget this process in the index and close it (leases and transfers are stopped first)."""

        def forget_me(db: sqlite3.Connection) -> None:
            self.budget.forget(db)
            db.execute("DELETE FROM pins WHERE owner = ?", (self.owner,))
            db.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))

        with contextlib.suppress(CacheError):
            self.index.write(forget_me)
        self.index.close()
