"""What the file cache reports: `CacheInfo`, `Pruned`, `CacheThrashingWarning`, and sizes for people."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

__all__ = ["CacheInfo", "CacheThrashingWarning", "Pruned", "human_size", "round_size"]


class CacheThrashingWarning(UserWarning):
    """The cache is too small for an operation: it evicts files it downloaded and then needs again."""


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """A snapshot of the cache: what the index holds, and what this :class:`~mediatable.io.cache.FileCache` object did.

    Attributes:
        directory: the cache folder.
        budget: the byte budget (``settings.cache_size``).
        entries: files in the index (all processes).
        bytes: bytes of those files.
        in_flight_bytes: bytes reserved by downloads in progress (all processes).
        pinned: entries pinned by open leases (all processes).
        hits: requests served from the cache by this object.
        misses: downloads this object started.
        bytes_downloaded: bytes this object downloaded.
        evictions: entries this object evicted.
    """

    directory: Path
    budget: int
    entries: int
    bytes: int
    in_flight_bytes: int
    pinned: int
    hits: int
    misses: int
    bytes_downloaded: int
    evictions: int

    def __str__(self) -> str:
        used = self.bytes / self.budget * 100 if self.budget else 0.0
        lines = [
            f"cache:      {self.directory}",
            f"entries:    {self.entries:,}",
            f"size:       {human_size(self.bytes)} of {human_size(self.budget)} ({used:.1f}%)",
            f"in flight:  {human_size(self.in_flight_bytes)}",
            f"pinned:     {self.pinned:,}",
        ]
        if self.hits or self.misses or self.evictions:
            lines.append(
                f"this run:   {self.hits:,} hits, {self.misses:,} misses, "
                f"{human_size(self.bytes_downloaded)} downloaded, {self.evictions:,} evictions"
            )
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Pruned:
    """What :meth:`~mediatable.io.cache.FileCache.prune` or :meth:`~mediatable.io.cache.FileCache.clear` removed.

    Attributes:
        entries: index entries removed (with their files).
        bytes: bytes those entries held.
        orphans: files removed that no entry referenced (crash leftovers).
    """

    entries: int
    bytes: int
    orphans: int = 0

    def __str__(self) -> str:
        text = f"removed {self.entries:,} files ({human_size(self.bytes)})"
        return text + (f" and {self.orphans:,} leftover files" if self.orphans else "")


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def round_size(size: int) -> str:
    """A size rounded up to a friendly setting value, e.g. ``'3GiB'``, ``'700MiB'``."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{math.ceil(size / factor)}{unit}"
    return str(size)
