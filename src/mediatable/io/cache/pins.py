"""Pins and access times: what this process's leases hold and touched, written to the index in batches.

A pinned entry is never evicted. In this process pins are exact (reference counts per URL, one per
lease holding it); other processes see them through the index's ``pins`` table. Access times feed
the LRU order. Both change on every cache hit, so neither is written per hit: they wait for the
next index transaction (a download's, or the writer's own within ``FLUSH_SECONDS``), and are
recorded to a resolution of ``ACCESS_RESOLUTION`` seconds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable

from mediatable.io.cache.entries import MEMO_LIMIT

__all__ = ["ACCESS_RESOLUTION", "FLUSH_EVERY", "PIN_DELAY", "AccessTimes", "Pins"]

# Past this many pending access times a write is queued at once.
FLUSH_EVERY = 512
# Last-access times are recorded to this resolution (seconds): a warm pass right after a cold one,
# or two passes in a row, write no access updates at all.
ACCESS_RESOLUTION = 10.0
# A pin reaches the index once it is this old (seconds): a lease that reads a batch of cached files
# and closes within that time costs the index nothing.
PIN_DELAY = 1.0


class Pins:
    """Pin counts of this process (url -> leases holding it), published to the index's ``pins`` table."""

    def __init__(self, owner: str, pid: int) -> None:
        self._owner = owner
        self._pid = pid
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}  # read without the lock by eviction (a dict read is atomic)
        self._in_index: set[str] = set()
        self._dirty: set[str] = set()
        self._pinned_at: dict[str, float] = {}
        self._force = False

    def pin(self, url: str) -> None:
        with self._lock:
            count = self.counts.get(url, 0)
            self.counts[url] = count + 1
            if count == 0:
                self._dirty.add(url)
                self._pinned_at[url] = time.monotonic()

    def unpin_many(self, urls: Iterable[str]) -> None:
        with self._lock:
            for url in urls:
                count = self.counts.get(url, 0) - 1
                if count <= 0:
                    self.counts.pop(url, None)
                    self._pinned_at.pop(url, None)
                    self._dirty.add(url)
                else:
                    self.counts[url] = count

    def publish_all(self) -> None:
        """Have the next index transaction write every pin, however young."""
        with self._lock:
            self._force = True

    def write(self, db: sqlite3.Connection) -> bool:
        """Write pin changes due now (in an index transaction); True when younger ones wait for later."""
        now = time.monotonic()
        with self._lock:
            force, self._force = self._force, False
            dirty, self._dirty = self._dirty, set()
            add, drop = [], []
            for url in dirty:
                if self.counts.get(url, 0) > 0:
                    if url in self._in_index:
                        continue
                    if force or now - self._pinned_at.get(url, now) >= PIN_DELAY:
                        add.append(url)
                    else:
                        self._dirty.add(url)  # not yet: next round
                elif url in self._in_index:
                    drop.append(url)
            waiting = bool(self._dirty)
            self._in_index.update(add)
            self._in_index.difference_update(drop)
        if add:
            db.executemany(
                "INSERT OR IGNORE INTO pins (url, owner, pid) VALUES (?, ?, ?)",
                [(url, self._owner, self._pid) for url in add],
            )
        if drop:
            db.executemany("DELETE FROM pins WHERE url = ? AND owner = ?", [(url, self._owner) for url in drop])
        return waiting


class AccessTimes:
    """Last-access times waiting for the index (and which were written, to skip repeats)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}
        self._written: dict[str, float] = {}
        self.hits = 0

    def hit(self, urls: Iterable[str], now: float) -> None:
        """Count cache hits and note their access (unless one was recorded just now)."""
        with self._lock:
            for url in urls:
                self.hits += 1
                if now - self._written.get(url, 0.0) >= ACCESS_RESOLUTION:
                    self._pending[url] = now

    def written(self, url: str, at: float) -> None:
        """An index write recorded this access itself (a new entry)."""
        with self._lock:
            self._written[url] = at

    def pending(self) -> int:
        return len(self._pending)

    def write(self, db: sqlite3.Connection) -> None:
        """Write pending access times (in an index transaction)."""
        with self._lock:
            access, self._pending = self._pending, {}
            if len(self._written) + len(access) > MEMO_LIMIT:
                self._written.clear()
            self._written.update(access)
        if access:
            db.executemany(
                "UPDATE entries SET last_access = ? WHERE url = ? AND last_access < ?",
                [(at, url, at) for url, at in access.items()],
            )
