"""`FileCache`: open a cache folder, hand out leases, report, prune, close. The contract is in the package docstring."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from mediatable.config import Settings
from mediatable.errors import CacheError
from mediatable.io import fetch
from mediatable.io.cache.core import Core
from mediatable.io.cache.download import Downloader
from mediatable.io.cache.index import Victim, delete_rows, pick_victims
from mediatable.io.cache.info import CacheInfo, Pruned
from mediatable.io.cache.lease import Lease
from mediatable.io.cache.locks import LockSet, is_held
from mediatable.io.cache.ranged import RangedReads
from mediatable.io.cache.sweep import PIN_LOCKS, Verified, reconcile, verify
from mediatable.io.cache.warm import Warmed, warm
from mediatable.io.objects import ObjectInfo, ObjectStores
from mediatable.io.transfer import ProgressBars, TransferStage

__all__ = ["FileCache"]


class FileCache:
    """Remote media as local files: one bounded, crash-safe cache shared by threads and processes.

    The contract (key, eviction, what is safe across threads and processes, crashes) is in the
    docstring of :mod:`mediatable.io.cache`.

    Lifecycle: ``FileCache(settings)`` creates the folder and index and sweeps crash leftovers;
    :meth:`lease` hands out leases (context managers) that fetch and pin files; :meth:`close` (or
    leaving a ``with`` block) closes leases, writes pending index updates and stops the index
    thread, and the transfer stage if the cache made its own. All methods are thread-safe. Do not
    carry a FileCache across ``fork``.

    Args:
        settings: the cache folder, budget, validation, concurrency and retry settings.
        stores: object stores to download from (default: built from ``settings``).
        transfers: the transfer stage downloads run on (default: a stage of the cache's own);
            a session shares one stage between downloads and uploads.
        progress_bars: draws the ``get_many`` progress bar (default: none).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
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

    def __init__(
        self,
        settings: Settings,
        stores: fetch.Stores | None = None,
        transfers: TransferStage | None = None,
        progress_bars: ProgressBars | None = None,
    ) -> None:
        self.settings = settings
        self.directory = settings.cache_dir
        self.budget = int(settings.cache_size)
        self._own_stage = transfers is None
        stage = TransferStage.from_settings(settings) if transfers is None else transfers
        self.transfers = stage
        self._lock = threading.Lock()
        self._leases: set[Lease] = set()
        self._closing = False
        try:
            self._core = Core(settings, stores if stores is not None else ObjectStores(settings), stage, progress_bars)
        except (OSError, sqlite3.Error, CacheError) as exc:
            raise CacheError(f"cannot open the file cache at {self.directory}: {exc}") from exc
        self._downloader = Downloader(self._core, whole=lambda mu, fresh: self._reads.whole(mu, fresh))
        self._reads = RangedReads(self._core, self._downloader)
        self._core.sweep()

    def lease(self) -> Lease:
        """A new :class:`Lease`: fetch files through it; they stay pinned until it closes.

        Examples:
            >>> with cache.lease() as lease:  # doctest: +SKIP
            ...     width = PIL.Image.open(lease.get("s3://bucket/a.jpg")).width
        """
        with self._lock:
            if self._closing:
                raise CacheError("the file cache is closed")
            lease = Lease(self._core, self._downloader, self._reads, self._forget_lease)
            self._leases.add(lease)
        return lease

    def warm(self, urls: Iterable[str | os.PathLike[str]], *, progress: bool | None = None) -> Warmed:
        """Download objects ahead of a job, in order, as many as ``cache_size`` holds together.

        Sizes come from the index (cached objects) or one HEAD each; what does not fit is not
        downloaded and is reported, and so are objects that cannot be reached. Objects already
        cached count toward the budget and cost nothing.

        Args:
            urls: media URLs (duplicates count once; local files are read in place, not cached).
            progress: show a progress bar of objects and bytes (default per ``settings.progress``).

        Returns:
            What is in the cache now, what did not fit, what failed.

        Examples:
            >>> print(cache.warm(["s3://bucket/a.mp4", "s3://bucket/b.mp4"]))  # doctest: +SKIP
            2 files in the cache (1.2 GiB, 1.2 GiB downloaded now, 0 already there)
        """
        with self.lease() as lease:
            return warm(self._core, lease, urls, progress)

    async def adopt(self, url: str, source: Path, info: ObjectInfo) -> bool:
        """Cache the local file ``source`` as the object at ``url`` (which holds the same bytes): no download later.

        For files just uploaded (generated media written to a destination). The file is moved
        into the cache; False (``source`` left in place) when the budget has no room for it or the
        entry exists. Runs on the transfer stage's loop: ``cache.transfers.submit(cache.adopt(...))``.

        Raises:
            CacheError: the cache folder cannot be written.
        """
        self._core.check_open()
        return await self._downloader.adopt(self._core.parse(url), source, info)

    def info(self) -> CacheInfo:
        """Totals from the index plus this object's counters.

        Examples:
            >>> print(cache.info())  # doctest: +SKIP
            cache:      /home/me/.mediatable/file_cache
            entries:    1,000 ...
        """
        core = self._core
        core.check_open()
        core.flush()  # publishes pending access times and pins first
        ((entries, size, reserved),) = core.index.read(
            "SELECT entries, bytes, (SELECT COALESCE(SUM(size), 0) FROM reservations) FROM totals WHERE id = 0"
        )
        # A pin is a kernel lock: ask the kernel about each entry (one system call each).
        paths = core.index.read("SELECT path FROM entries")
        pinned = sum(is_held(core.lock_folder, PIN_LOCKS, path[3:67]) for (path,) in paths)
        stats = core.stats
        return CacheInfo(
            directory=self.directory,
            budget=self.budget,
            entries=entries,
            bytes=size,
            in_flight_bytes=reserved,
            pinned=pinned,
            hits=core.access.hits,
            misses=stats.misses,
            bytes_downloaded=stats.bytes_downloaded,
            evictions=stats.evictions,
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
        core = self._core
        core.check_open()
        target = self.budget if max_bytes is None else max(int(max_bytes), 0)
        core.sweep()
        orphans = reconcile(self.directory, core.index, core.locks)
        removed = 0
        freed = 0
        pins = core.pins.counts

        def evict(db: sqlite3.Connection, evicting: LockSet) -> list[Victim]:
            current = db.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()[0]
            if current <= target:
                return []
            need = current - target
            victims = pick_victims(db, need, pins, evicting) or pick_victims(db, need, pins, evicting, partial=True)
            delete_rows(db, victims)
            return victims

        while True:
            with LockSet(core.lock_folder, PIN_LOCKS) as evicting:
                victims = core.index.write(lambda db, evicting=evicting: evict(db, evicting))
                if not victims:
                    break  # at the target, or only pinned entries remain
                core.remove_files(victims)
            removed += len(victims)
            freed += sum(size for _, _, size in victims)
        return Pruned(entries=removed, bytes=freed, orphans=orphans)

    def verify(self) -> Verified:
        """Check every entry against its file: the size always, the content where a hash was recorded.

        Damaged entries (a file missing, truncated or rewritten behind the cache's back) are
        removed, so the next access downloads the object again; files no entry references go too.

        Returns:
            What was checked and found (:class:`~mediatable.io.cache.sweep.Verified`).

        Examples:
            >>> print(cache.verify())  # doctest: +SKIP
            checked 1,000 entries (1,000 by content hash): all intact
        """
        core = self._core
        core.check_open()
        return verify(self.directory, core.index, core.locks)

    def clear(self) -> Pruned:
        """Remove every entry that is not pinned and every crash leftover.

        Examples:
            >>> cache.clear()  # doctest: +SKIP
            Pruned(entries=1000, bytes=81234567, orphans=0)
        """
        return self.prune(max_bytes=0)

    def close(self) -> None:
        """Close open leases, write pending index updates, stop the transfer stage (if the cache's own)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True  # from here on no new lease; the leases below are all there are
            leases = list(self._leases)
        for lease in leases:
            lease.close()
        if self._own_stage:
            self.transfers.close()
        self._core.closed = True
        self._core.close()

    def _forget_lease(self, lease: Lease) -> None:
        with self._lock:
            self._leases.discard(lease)

    def __enter__(self) -> FileCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
