"""What one lease holds: its window of pinned files, files fetched ahead, and files too big to cache.

A :class:`Holding` is the state behind one :class:`~mediatable.io.cache.lease.Lease`; the download
path records into it (through its methods, under its own lock) what it fetched for the lease.
"""

from __future__ import annotations

import contextlib
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

    Pins come in three kinds: files :meth:`hold` gave to ``Lease.get`` (kept until the lease closes
    or releases them), files ``get_many`` fetched ahead and not yet handed out (kept likewise), and
    files ``get_many`` handed out: a window of recent files (url -> size, oldest first) whose
    oldest members are unpinned beyond ``pin_cap`` bytes, so one lease can stream over more data
    than the cache holds. Private files: objects that could not be cached, in
    ``leases/<owner>-<token>/``, deleted when the lease closes. Per-URL memories (validated,
    evicted, seen) are bounded: a lease over ten million URLs does not keep ten million of each.
    """

    def __init__(self, pins: Pins, directory: Path, owner: str, pin_cap: int) -> None:
        self._pins = pins
        self._folder = directory / "leases" / f"{owner}-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self._kept: dict[str, int] = {}
        self._window: OrderedDict[str, int] = OrderedDict()
        self._window_bytes = 0
        self._prefetched: dict[str, int] = {}
        self._pin_cap = max(pin_cap, 1)
        self._private: dict[str, Path] = {}
        self._private_made = False
        self._validated = _Recent()
        self._evicted = _Recent()
        self._seen = _Recent()
        self.bytes_seen = (
            0  # bytes of the distinct files this lease fetched (duplicates past the memory's bound count twice)
        )
        self.thrashed = 0  # downloads of files this lease evicted itself
        self.closed = False

    # -- pins -----------------------------------------------------------------------------

    @property
    def pin_cap(self) -> int:
        """Bytes of handed-out files kept pinned; older ones beyond it are unpinned."""
        return self._pin_cap

    def hold(self, url: str, size: int, prefetch: bool = False, windowed: bool = False) -> bool:
        """Pin ``url`` for this lease: until it closes (``Lease.get``), as fetched ahead (``prefetch``),
        or in the window of recent files (``windowed``: blocks of a ranged read, streamed through).

        Returns False when the entry cannot be pinned because an evictor is deleting it. A URL the
        lease holds already needs no new pin.
        """
        with self._lock:
            if not self._seen.add(url):
                self.bytes_seen += size
            if url in self._kept:
                return True
            if url in self._prefetched:
                if not prefetch:
                    self._kept[url] = self._prefetched.pop(url)
                return True
            if url in self._window:
                if windowed:
                    self._window.move_to_end(url)
                    return True
                size = self._window.pop(url)
                self._window_bytes -= size
                if prefetch:
                    self._prefetched[url] = size  # wanted again further down a get_many
                else:
                    self._kept[url] = size
                return True
            if not self._pins.pin(url):
                return False
            if prefetch:
                self._prefetched[url] = size
                return True
            if not windowed:
                self._kept[url] = size
                return True
            dropped = self._add_to_window_locked(url, size)
        if dropped:
            self._pins.unpin_many(dropped)
        return True

    def hand_out(self, url: str) -> int:
        """A prefetched file reaches the consumer of ``get_many``: it joins the window of recent files.

        Returns its size, or 0 when it was held already (in the window, or until the lease closes).
        """
        with self._lock:
            size = self._prefetched.pop(url, None)
            if size is None:
                if url in self._window:
                    self._window.move_to_end(url)
                return 0
            dropped = self._add_to_window_locked(url, size)
        if dropped:
            self._pins.unpin_many(dropped)
        return size

    def _add_to_window_locked(self, url: str, size: int) -> list[str]:
        """Add to the window; returns the oldest members beyond the cap, to unpin (outside the lock)."""
        self._window[url] = size
        self._window_bytes += size
        dropped = []
        while self._window_bytes > self._pin_cap and len(self._window) > 1:
            old, old_size = self._window.popitem(last=False)
            self._window_bytes -= old_size
            dropped.append(old)
        return dropped

    def release(self, url: str) -> None:
        """Unpin one URL and delete its private file, if any."""
        with self._lock:
            held = False
            for pinned in (self._kept, self._prefetched):
                held = pinned.pop(url, None) is not None or held
            size = self._window.pop(url, None)
            if size is not None:
                self._window_bytes -= size
                held = True
            private = self._private.pop(url, None)
        if held:
            self._pins.unpin_many([url])
        if private is not None:
            with contextlib.suppress(OSError):
                private.unlink()

    def close(self) -> bool:
        """Unpin everything and delete the private files; False if it was closed already."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            held = [*self._kept, *self._prefetched, *self._window]
            self._kept.clear()
            self._prefetched.clear()
            self._window.clear()
            self._window_bytes = 0
            self._private.clear()
            made = self._private_made
        self._pins.unpin_many(held)
        if made:
            shutil.rmtree(self._folder, ignore_errors=True)
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
            for url in urls:
                self._evicted.add(url)

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
        """A new file name in this lease's own folder (created on first use; its name says whose it is)."""
        with self._lock:
            if not self._private_made:
                self._folder.mkdir(parents=True, exist_ok=True)
                self._private_made = True
            return self._folder / f"{digest(url)}-{uuid.uuid4().hex[:6]}{ext}"

    def adopt(self, url: str, other: Path) -> Path:
        """Share a file another lease fetched without caching: a hard link in this lease's folder."""
        existing = self._private.get(url)
        if existing is not None:
            return existing
        mine = self.private_path(url, other.suffix)
        os.link(other, mine)
        self.keep_private(url, mine)
        return mine


class _Recent:
    """A set that remembers at most ``limit`` of its most recently added members."""

    def __init__(self, limit: int = 100_000) -> None:
        self._members: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, key: str) -> bool:
        return key in self._members

    def add(self, key: str) -> bool:
        """Add ``key``; returns whether it was there already."""
        if key in self._members:
            self._members.move_to_end(key)
            return True
        self._members[key] = None
        if len(self._members) > self._limit:
            self._members.popitem(last=False)
        return False
