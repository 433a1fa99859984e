"""Pins and access times: what this process's leases hold and touched.

A pinned entry is never evicted: a pin is a shared kernel lock, taken when the first lease of this
process holds the URL and dropped when the last one lets go. Access times feed the LRU order; they
change on every cache hit, so they are not written per hit: they wait for the next index
transaction (a download's, or the writer's own within ``FLUSH_SECONDS``), and are recorded to a
resolution of ``ACCESS_RESOLUTION`` seconds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from mediatable.io.cache.entries import MEMO_LIMIT, digest
from mediatable.io.cache.locks import LockSet
from mediatable.io.cache.sweep import PIN_LOCKS

__all__ = ["ACCESS_RESOLUTION", "FLUSH_EVERY", "AccessTimes", "Pins"]

# Past this many pending access times a write is queued at once.
FLUSH_EVERY = 512
# Last-access times are recorded to this resolution (seconds): a warm pass right after a cold one,
# or two passes in a row, write no access updates at all.
ACCESS_RESOLUTION = 10.0


class Pins:
    """Pins of this process: a count per URL (leases holding it) and a shared kernel lock while it is above 0.

    The lock (:class:`~mediatable.io.cache.locks.LockSet` of kind ``pins``, keyed by the URL's
    digest) is what evictors in every process respect; it exists from the moment of the pin, so a
    hit here is safe from eviction elsewhere at once, and it vanishes with the process.
    """

    def __init__(self, locks: Path) -> None:
        self._lock = threading.Lock()
        self._locks = LockSet(locks, PIN_LOCKS)
        self.counts: dict[str, int] = {}  # read without the lock by eviction (a dict read is atomic)

    def pin(self, url: str) -> bool:
        """Add one pin; False when an evictor holds the entry right now (it is being deleted)."""
        with self._lock:
            count = self.counts.get(url, 0)
            if count == 0 and not self._locks.add(digest(url), shared=True):
                return False
            self.counts[url] = count + 1
            return True

    def unpin_many(self, urls: Iterable[str]) -> None:
        with self._lock:
            released = []
            for url in urls:
                count = self.counts.get(url, 0) - 1
                if count <= 0:
                    if self.counts.pop(url, None) is not None:
                        released.append(url)
                else:
                    self.counts[url] = count
            if self.counts:
                self._locks.remove_many([digest(url) for url in released])
            elif released:  # the last pins of this process (a lease closing alone): every lock goes
                self._locks.remove_all()

    def close(self) -> None:
        with self._lock:
            self.counts.clear()
            self._locks.close()


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
