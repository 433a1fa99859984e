"""The space budget: bytes of entries plus space reserved for downloads in flight stay within ``cache_size``.

Space for downloads in flight is reserved in the index, where every process sees it. To keep an
index write out of most downloads, a process reserves a chunk of space at a time (1/256 of the
budget, at most 64 MiB) under one row of its own and hands it out locally: its *credit*.
Publishing an entry moves its bytes from that row to the entry (in the same transaction). Unused
credit goes back when a lease closes and with the cache. Making room evicts unpinned entries, least
recently used first; an entry is deleted only while its pin key is held exclusively, so no lease
anywhere holds it.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from mediatable.io.cache.index import CacheIndex, Victim, delete_rows, pick_victims
from mediatable.io.cache.locks import LockSet
from mediatable.io.cache.sweep import PIN_LOCKS, forget_dead

__all__ = ["Budget"]


class Budget:
    """This process's share of the cache's space: its reservation in the index and the local credit."""

    def __init__(
        self,
        index: CacheIndex,
        budget: int,
        owner: str,
        pins: Mapping[str, int],
        locks: Path,
        remove_files: Callable[[list[Victim]], None],
    ) -> None:
        self.budget = budget
        self._index = index
        self._owner = owner
        self._pins = pins
        self._locks = locks
        self._remove_files = remove_files
        self._lock = threading.Lock()
        self._credit = 0  # bytes reserved in the index under this owner and not yet handed out
        self._published = 0  # reserved bytes now held by published entries, not yet written
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
        """Reserve ``size`` bytes, evicting LRU entries (their files are deleted before this returns).

        Returns the evicted entries, or None when there is no room (everything else is pinned or
        reserved). Runs on the transfer stage's loop; never waits for anything but the index.
        """
        if self._take_credit(size):
            return []
        if self._refill is None:
            self._refill = asyncio.Lock()
        async with self._refill:
            if self._take_credit(size):
                return []
            for want in dict.fromkeys((max(size, self._chunk), size)):  # a chunk, else just this file
                with LockSet(self._locks, PIN_LOCKS) as evicting:
                    reserve = functools.partial(self._reserve, size=want, evicting=evicting)
                    victims = await asyncio.wrap_future(self._index.submit(reserve))
                    if victims is None:
                        continue
                    if victims:
                        self._remove_files(victims)  # still holding their pin keys: nobody can pin them
                with self._lock:
                    self._credit += want - size
                return victims
        return None

    def _reserve(self, db: sqlite3.Connection, size: int, evicting: LockSet) -> list[Victim] | None:
        """Add ``size`` bytes to this owner's reservation (in an index transaction); the evicted entries, or None."""
        victims: list[Victim] = []
        # An entry published earlier in this transaction holds its bytes already: move them out
        # of the reservation now, not at the end of the transaction, or they count twice here.
        self.write(db)
        excess = _used(db) + size - self.budget
        if excess > 0 and forget_dead(db, self._locks, self._owner):
            excess = _used(db) + size - self.budget  # dead processes held space
        if excess > 0:
            victims = pick_victims(db, excess, self._pins, evicting)
            if not victims:
                return None
            delete_rows(db, victims)
        db.execute(
            "INSERT INTO reservations (owner, size, created) VALUES (?, ?, ?)"
            " ON CONFLICT (owner) DO UPDATE SET size = size + excluded.size",
            (self._owner, size, time.time()),
        )
        return victims

    def unreserve(self, size: int) -> None:
        """A download that will not be published gives its space back (to this process's credit)."""
        with self._lock:
            self._credit += size

    def give_back(self, size: int) -> None:
        """Return ``size`` reserved bytes to the index at once (a download whose entry could not be written)."""

        def give_back(db: sqlite3.Connection) -> None:
            db.execute("UPDATE reservations SET size = MAX(size - ?, 0) WHERE owner = ?", (size, self._owner))

        self._index.submit(give_back)

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
            db.execute("UPDATE reservations SET size = size - ? WHERE owner = ?", (credit, self._owner))
            db.execute("DELETE FROM reservations WHERE owner = ? AND size <= 0", (self._owner,))

        self._index.submit(give_back)

    def write(self, db: sqlite3.Connection) -> None:
        """Shrink the reservation by the bytes published since the last transaction (in that transaction)."""
        with self._lock:
            published, self._published = self._published, 0
        if published:
            db.execute("UPDATE reservations SET size = size - ? WHERE owner = ?", (published, self._owner))

    def forget(self, db: sqlite3.Connection) -> None:
        """Drop this owner's reservation (the cache closes)."""
        db.execute("DELETE FROM reservations WHERE owner = ?", (self._owner,))


def _used(db: sqlite3.Connection) -> int:
    ((used,),) = db.execute(
        "SELECT bytes + (SELECT COALESCE(SUM(size), 0) FROM reservations) FROM totals WHERE id = 0"
    ).fetchall()
    return int(used)
