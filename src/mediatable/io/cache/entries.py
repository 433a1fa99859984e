"""What one cache entry is: its file name, the in-process memo of entries, and version checks."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

from mediatable.io import fetch
from mediatable.io.objects import ObjectInfo

__all__ = ["Entry", "Memo", "digest", "file_name", "same_version"]

# In-process memos (url -> entry, raw string -> parsed URL) are bounded; past the bound they restart.
MEMO_LIMIT = 200_000
_EXT = re.compile(r"\.[a-z0-9]{1,15}")


@dataclasses.dataclass(frozen=True)
class Entry:
    """A cached file as the hot path needs it."""

    path: Path
    name: str  # str(path), for os.path.exists without a conversion
    size: int
    etag: str | None
    last_modified: float | None

    @classmethod
    def at(cls, directory: Path, rel: str, size: int, etag: str | None, last_modified: float | None) -> Entry:
        path = directory / rel
        return cls(path, str(path), size, etag, last_modified)


class Memo(dict[str, Entry]):
    """url -> entry of this process: a bounded dict (cleared when full; the index is the truth)."""

    def remember(self, url: str, entry: Entry) -> None:
        if len(self) >= MEMO_LIMIT:
            self.clear()
        self[url] = entry


def digest(url: str) -> str:
    """The sha256 of a normalized URL: names its file and its locks."""
    return hashlib.sha256(url.encode()).hexdigest()


def file_name(url_digest: str, extension: str) -> str:
    """The entry's path relative to the cache folder, ``ab/<sha256>.<ext>`` (extension kept when sane)."""
    ext = extension if _EXT.fullmatch(extension) else ""
    return f"{url_digest[:2]}/{url_digest}{ext}"


def same_version(entry: Entry, info: ObjectInfo) -> bool:
    """Whether a cached entry is the object ``info`` describes (ETag first, else size and mtime)."""
    if entry.etag and info.etag:
        return entry.etag == info.etag and entry.size == info.size
    if entry.size != info.size:
        return False
    modified = fetch.last_modified_timestamp(info.last_modified)
    return entry.last_modified is None or modified is None or abs(entry.last_modified - modified) < 1.0
