"""The space budget: bytes of entries plus space reserved for downloads in flight stay within ``cache_size``.

Space for downloads in flight is reserved in the index, where every process sees it. To keep an
index write out of most downloads, a process reserves a chunk of space at a time (1/256 of the
budget, at most 64 MiB) under one row of its own and hands it out locally: its *credit*.
Publishing an entry moves its bytes from that row to the entry (in the same transaction). Unused
credit goes back when a lease closes and with the cache. Making room evicts unpinned entries, least
recently used first.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future

from mediatable.io.cache.index import CacheIndex, Victim, delete_rows, pick_victims
from mediatable.io.cache.sweep import drop_dead_owners

__all__ = ["Budget"]


class Budget:
    """This process's share of the cache's space: reservations in the index and the local credit."""

    def __init__(
        self,
        index: CacheIndex,
        budget: int,
        owner: str,
        pid: int,
        pins: Mapping[str, int],
        forget_dead: Callable[[], bool],
    ) -> None:
        self.budget = budget
        self._index = index
        self._owner = owner
        self._pid = pid
        self._pins = pins
        self._forget_dead = forget_dead
        self._lock = threading.Lock()
        self._credit = 0  # bytes reserved in the index under `_row` and not yet handed out
        self._published = 0  # reserved bytes now held by published entries, not yet written
        self._row = f"credit:{owner}"
        self._chunk = min(budget // 256, 64 * 1024**2)
        self._refill: asyncio.Lock | None = None  # one refill at a time, or 32 downloads reserve 32 chunks

    def fits(self, size: int) -> bool:
        return size <= self.budget

    def _take_credit(self, size: int) -> bool:
        with self._lock:
            if self._credit < size:
                return False
            self._credit -= size
            return True

    async def reserve(self, size: int) -> list[Victim] | None:
        """Reserve ``size`` bytes, evicting LRU entries: the evicted entries (their files are the
        caller's to delete), or None when there is no room (everything else is pinned or reserved).
        Runs on the transfer stage's loop."""
        if self._take_credit(size):
            return []
        if self._refill is None:
            self._refill = asyncio.Lock()
        async with self._refill:
            if self._take_credit(size):
                return []
            loop = asyncio.get_running_loop()
            for want in dict.fromkeys((max(size, self._chunk), size)):  # a chunk, else just this file
                victims = await asyncio.wrap_future(self._reserve_once(want))
                if victims is None and await loop.run_in_executor(None, self._forget_dead):
                    victims = await asyncio.wrap_future(self._reserve_once(want))  # dead processes held space
                if victims is not None:
                    with self._lock:
                        self._credit += want - size
                    return victims
        return None

    def _reserve_once(self, size: int) -> Future[list[Victim] | None]:
        """Add ``size`` bytes to this process's reservation; resolves to the evicted entries (None: no room)."""

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
                (self._row, self._owner, self._pid, size, time.time()),
            )
            return victims

        return self._index.submit(reserve)

    def unreserve(self, size: int) -> None:
        """A download that will not be published gives its space back (to this process's credit)."""
        with self._lock:
            self._credit += size

    def published(self, size: int) -> None:
        """An entry of ``size`` bytes was published in the current index transaction (see :meth:`write`)."""
        with self._lock:
            self._published += size

    def return_credit(self) -> None:
        """Give unused reserved space back to the index."""
        with self._lock:
            if self._credit <= 0:
                return
            credit, self._credit = self._credit, 0

        def give_back(db: sqlite3.Connection) -> None:
            db.execute("UPDATE reservations SET size = size - ? WHERE id = ?", (credit, self._row))
            db.execute("DELETE FROM reservations WHERE id = ? AND size <= 0", (self._row,))

        self._index.submit(give_back)

    def write(self, db: sqlite3.Connection) -> None:
        """Shrink the reservation by the bytes published since the last transaction (in that transaction)."""
        with self._lock:
            published, self._published = self._published, 0
        if published:
            db.execute("UPDATE reservations SET size = size - ? WHERE id = ?", (published, self._row))

    def forget(self, db: sqlite3.Connection) -> None:
        """Drop this process's reservation (the cache closes)."""
        db.execute("DELETE FROM reservations WHERE owner = ?", (self._owner,))
