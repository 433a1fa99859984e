"""What one lease holds: its window of pinned files, files fetched ahead, and files too big to cache.

A :class:`Holding` is the state behind one :class:`~mediatable.io.cache.lease.Lease`; the download
path records into it (through its methods, under its own lock) what it fetched for the lease.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from mediatable.io.cache.entries import digest
from mediatable.io.cache.pins import Pins

__all__ = ["Holding"]


class Holding:
    """The pins, private files and statistics of one lease.

    Pins: files handed out (url -> size, oldest first; unpinned beyond ``pin_cap`` bytes), and
    files fetched ahead by ``get_many`` but not handed out yet (always pinned). Private files: objects
    that could not be cached, in ``leases/<pid>-<token>/``, deleted when the lease closes.
    """

    def __init__(self, pins: Pins, directory: Path, pin_cap: int) -> None:
        self._pins = pins
        self._directory = directory
        self._token = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._held: OrderedDict[str, int] = OrderedDict()
        self._held_bytes = 0
        self._prefetched: dict[str, int] = {}
        self._pin_cap = max(pin_cap, 1)
        self._private: dict[str, Path] = {}
        self._private_dir: Path | None = None
        self._private_lock: int | None = None
        self._validated: set[str] = set()
        self._evicted: set[str] = set()
        self.seen: dict[str, int] = {}  # url -> size of everything this lease fetched
        self.thrashed = 0  # downloads of files this lease evicted itself
        self.closed = False

    # -- pins -----------------------------------------------------------------------------

    def holds(self, url: str) -> bool:
        return url in self._held

    def hold(self, url: str, size: int, prefetch: bool = False) -> None:
        """Pin ``url`` for this lease.

        A prefetched file stays pinned until :meth:`hand_out`; a handed-out one joins the window of
        recent files, whose oldest members are unpinned beyond the cap.
        """
        with self._lock:
            self.seen.setdefault(url, size)
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
            self._pins.pin(url)
            if prefetch:
                self._prefetched[url] = size
            else:
                self._add_to_window_locked(url, size)

    def hold_many(self, hits: Iterable[tuple[str, int]]) -> None:
        """:meth:`hold` (prefetched) for a batch of hits."""
        for url, size in hits:
            self.hold(url, size, prefetch=True)

    def hand_out(self, url: str) -> None:
        """A prefetched file reaches the consumer: it joins the window of recent files."""
        with self._lock:
            self._hand_out_locked(url)

    def _hand_out_locked(self, url: str) -> None:
        size = self._prefetched.pop(url, None)
        if size is not None:
            self._add_to_window_locked(url, size)
        elif url in self._held:
            self._held.move_to_end(url)

    def _add_to_window_locked(self, url: str, size: int) -> None:
        self._held[url] = size
        self._held_bytes += size
        dropped = []
        while self._held_bytes > self._pin_cap and len(self._held) > 1:
            old, old_size = self._held.popitem(last=False)
            self._held_bytes -= old_size
            dropped.append(old)
        if dropped:
            self._pins.unpin_many(dropped)

    def release(self, url: str) -> None:
        """Unpin one URL and delete its private file, if any."""
        with self._lock:
            size = self._held.pop(url, None)
            if size is not None:
                self._held_bytes -= size
            if self._prefetched.pop(url, None) is not None or size is not None:
                self._pins.unpin_many([url])
            private = self._private.pop(url, None)
        if private is not None:
            with contextlib.suppress(OSError):
                private.unlink()

    def close(self) -> bool:
        """Unpin everything and delete the private files; False if it was closed already."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            self._pins.unpin_many([*self._held, *self._prefetched])
            self._held.clear()
            self._prefetched.clear()
            self._held_bytes = 0
            self._private.clear()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
        if self._private_lock is not None:
            os.close(self._private_lock)
            self._private_lock = None
        return True

    # -- validation and statistics ----------------------------------------------------------

    def validated(self, url: str) -> bool:
        """Whether this lease already checked ``url`` against its server (``cache_validation='etag'``)."""
        return url in self._validated

    def mark_validated(self, url: str) -> None:
        with self._lock:
            self._validated.add(url)

    def note_evicted(self, urls: Iterable[str]) -> None:
        with self._lock:
            self._evicted.update(urls)

    def note_download(self, url: str) -> None:
        """A download for this lease starts: count it as thrashing if this lease evicted the file."""
        with self._lock:
            if url in self._evicted:
                self.thrashed += 1

    # -- private files ------------------------------------------------------------------------

    def private(self, url: str) -> Path | None:
        return self._private.get(url)

    def keep_private(self, url: str, path: Path) -> None:
        with self._lock:
            self._private[url] = path

    def private_path(self, url: str, ext: str) -> Path:
        """A new file name in this lease's own folder (created and locked on first use)."""
        with self._lock:
            if self._private_dir is None:
                folder = self._directory / "leases" / f"{os.getpid()}-{self._token}"
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)  # held until the lease closes: sweepers keep out
                self._private_lock = fd
                self._private_dir = folder
            return self._private_dir / f"{digest(url)}-{uuid.uuid4().hex[:6]}{ext}"

    def adopt(self, url: str, other: Path) -> Path:
        """Share a file another lease fetched without caching: a hard link in this lease's folder."""
        existing = self._private.get(url)
        if existing is not None:
            return existing
        mine = self.private_path(url, other.suffix)
        os.link(other, mine)
        self.keep_private(url, mine)
        return mine
