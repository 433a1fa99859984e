"""Blocks of large objects as cache entries: their keys, their file format, and ranged GETs pinned to one version.

A block is bytes ``[i * block_size, (i + 1) * block_size)`` of one version of one object. It is an
ordinary cache entry (budget, LRU, pins, single flight, crash safety all apply) whose key is::

    block:<sha256(url)>/<object size>/<version tag>/<block size>/<index>

(the version tag hashes the object's ETag, or its last-modified time when it has none), and whose
row records the object's ETag and last-modified time, so the object's version can be rebuilt from
the index alone. The entry file, ``ab/<sha256(key)>.blk``, holds the block's bytes followed by an
8-byte trailer: ``MTB1`` and the CRC32C of the bytes. The trailer is checked whenever a block is
read back; a block that fails it (changed behind the cache's back) is dropped and fetched again.

Every ranged GET names the version it wants (``If-Match`` with the ETag) and its answer is checked
against that version (size, ETag, date): a server that ignores ``If-Match`` is caught too. A change
is :class:`~mediatable.errors.MediaChanged`, never bytes of two versions. A server that answers a
``Range`` request with the whole object (``200`` instead of ``206``) is :class:`RangesUnsupported`:
the caller downloads it whole instead.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

import google_crc32c
import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import NotSupportedError, PreconditionError

from mediatable.errors import MediaChanged, MediaError, MediaFetchError
from mediatable.io import fetch
from mediatable.io.cache.entries import digest
from mediatable.io.cache.index import CacheIndex, Row, Victim, delete_rows
from mediatable.io.objects import ObjectInfo
from mediatable.io.objects.stores import head_info
from mediatable.io.urls import MediaUrl, redact_url

__all__ = [
    "BLOCK_EXTENSION",
    "TRAILER_SIZE",
    "KnownVersion",
    "RangesUnsupported",
    "block_key",
    "block_keys",
    "describe",
    "forget_version",
    "get_range",
    "known_versions",
    "read_block_file",
    "same_object",
    "stream_into",
    "trailer",
    "unseal",
]

BLOCK_EXTENSION = ".blk"
TRAILER_SIZE = 8
_MAGIC = b"MTB1"
_STREAM_CHUNK = 1024 * 1024


class RangesUnsupported(MediaFetchError):
    """The server answered a ``Range`` request with the whole object: read it whole instead.

    Private to the cache (callers fall back to a whole download); never reaches users.
    """


# -- keys and versions ----------------------------------------------------------------------------


def _timestamp(info: ObjectInfo) -> float | None:
    return fetch.last_modified_timestamp(info.last_modified)


def version_tag(info: ObjectInfo) -> str:
    """A short hash naming one version of an object (its ETag, else its modification second)."""
    stamp = _timestamp(info)
    basis = info.etag or (str(int(stamp)) if stamp is not None else "")
    return hashlib.sha256(f"{info.size}\0{basis}".encode()).hexdigest()[:16]


def _prefix(url: str) -> str:
    return f"block:{digest(url)}/"


def block_key(url: str, info: ObjectInfo, block_size: int, index: int) -> str:
    """The index key of block ``index`` of the version ``info`` of ``url``.

    Examples:
        >>> key = block_key("s3://b/v.mp4", ObjectInfo(size=10, etag='"e"', last_modified=None), 4, 2)
        >>> key.startswith("block:") and key.endswith("/10/" + key.split("/")[2] + "/4/2")
        True
    """
    return f"{_prefix(url)}{info.size}/{version_tag(info)}/{block_size}/{index}"


def same_object(pinned: ObjectInfo, got: ObjectInfo) -> bool:
    """Whether a response's metadata describes the pinned version (size, then ETag, else the date).

    Examples:
        >>> a = ObjectInfo(size=5, etag='"x"', last_modified=None)
        >>> same_object(a, ObjectInfo(size=5, etag='"x"', last_modified=None))
        True
        >>> same_object(a, ObjectInfo(size=5, etag='"y"', last_modified=None))
        False
    """
    if pinned.size != got.size:
        return False
    if pinned.etag and got.etag:
        return pinned.etag == got.etag
    if pinned.etag or got.etag:
        return False  # one answer has an ETag and the other none: not provably the same
    before, after = _timestamp(pinned), _timestamp(got)
    return before is None or after is None or abs(before - after) < 1.0


def describe(info: ObjectInfo) -> str:
    """A version for messages: its ETag, else size and date (no secrets in either)."""
    if info.etag:
        return f"ETag {info.etag}"
    stamp = _timestamp(info)
    when = datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat() if stamp is not None else "no date"
    return f"{info.size} bytes, {when}"


@dataclasses.dataclass
class KnownVersion:
    """A version of an object with blocks in the cache: its metadata and block index -> entry path."""

    info: ObjectInfo
    block_size: int
    blocks: dict[int, str]
    created: float


def block_keys(url: str) -> tuple[str, str]:
    """``(low, high)``: the block keys of ``url`` (every version) are the keys in ``[low, high)``.

    Examples:
        >>> low, high = block_keys("s3://b/v.mp4")
        >>> low <= block_key("s3://b/v.mp4", ObjectInfo(size=10, etag=None, last_modified=None), 4, 0) < high
        True
    """
    prefix = _prefix(url)
    return prefix, prefix[:-1] + "0"  # '0' sorts right after '/': every key with the prefix


def known_versions(url: str, rows: Iterable[Row]) -> list[KnownVersion]:
    """The versions of ``url`` that have blocks among ``rows`` (the index rows in :func:`block_keys`),
    most recently cached first.

    Examples:
        >>> info = ObjectInfo(size=10, etag='"e"', last_modified=None)
        >>> rows = [(block_key("s3://b/v", info, 4, 2), "ab/x.blk", 10, '"e"', None, 1.0)]
        >>> [(known.info.size, known.block_size, known.blocks) for known in known_versions("s3://b/v", rows)]
        [(10, 4, {2: 'ab/x.blk'})]
    """
    prefix = _prefix(url)
    found: dict[tuple[str, ...], KnownVersion] = {}
    for key, path, _, etag, last_modified, created in rows:
        try:
            size, tag, block_size, number = key[len(prefix) :].split("/")
            known = found.get((size, tag, block_size))
            if known is None:
                modified = (
                    datetime.datetime.fromtimestamp(last_modified, datetime.UTC) if last_modified is not None else None
                )
                info = ObjectInfo(size=int(size), etag=etag, last_modified=modified)
                known = found[(size, tag, block_size)] = KnownVersion(info, int(block_size), {}, created)
            known.blocks[int(number)] = path
            known.created = max(known.created, created)
        except ValueError:
            continue  # not a key this module wrote
    return sorted(found.values(), key=lambda known: known.created, reverse=True)


def forget_version(index: CacheIndex, url: str, info: ObjectInfo) -> list[Victim]:
    """Delete the index rows of every block of one version of ``url``; returns them (their files are the caller's)."""
    prefix = f"{_prefix(url)}{info.size}/{version_tag(info)}/"

    def drop(db: sqlite3.Connection) -> list[Victim]:
        rows = db.execute(
            "SELECT url, path, size FROM entries WHERE url >= ? AND url < ?", (prefix, prefix[:-1] + "0")
        ).fetchall()
        victims = [(key, path, size) for key, path, size in rows]
        delete_rows(db, victims)
        return victims

    victims: list[Victim] = index.write(drop)
    return victims


# -- the block file format ----------------------------------------------------------------------


def trailer(data: bytes) -> bytes:
    """The 8 bytes written after a block's data: magic and CRC32C."""
    return _MAGIC + google_crc32c.value(data).to_bytes(4, "little")


def unseal(raw: bytes) -> bytes | None:
    """A block file's data if its trailer checks out, else None (damaged).

    Examples:
        >>> unseal(b"hello" + trailer(b"hello"))
        b'hello'
        >>> unseal(b"hellO" + trailer(b"hello")) is None
        True
    """
    if len(raw) < TRAILER_SIZE or raw[-TRAILER_SIZE:-4] != _MAGIC:
        return None
    data = raw[:-TRAILER_SIZE]
    if google_crc32c.value(data).to_bytes(4, "little") != raw[-4:]:
        return None
    return data


def read_block_file(path: str) -> bytes | None:
    """The data of a block file, checked; None when the file is gone or damaged."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return None
    return unseal(raw)


# -- ranged GETs --------------------------------------------------------------------------------


async def get_range(
    stores: fetch.Stores, url: MediaUrl, start: int, end: int, pinned: ObjectInfo | None
) -> tuple[Any, ObjectInfo]:
    """Start a GET of bytes ``[start, end)`` of ``url`` (of the ``pinned`` version when given).

    Returns:
        obstore's result (its body not read yet) and the object's metadata from the answer.

    Raises:
        MediaChanged: the object is not the pinned version any more.
        RangesUnsupported: the server sent the whole object instead of the range.
        MediaError: the request failed (see its ``is_retryable``).
    """
    options: dict[str, Any] = {"range": (start, end)}
    if pinned is not None and pinned.etag:
        options["if_match"] = pinned.etag
    try:
        store, path = stores.resolve(url)
        result = await obstore.get_async(store, path, options=options)
    except MediaError:
        raise
    except PreconditionError as exc:
        assert pinned is not None
        raise _changed(url, pinned, None) from exc
    except NotSupportedError as exc:
        safe = redact_url(url.url)
        raise RangesUnsupported(f"{safe}: the server does not answer range requests", url=safe) from exc
    except (ObstoreError, OSError) as exc:
        raise stores.translate_error(exc, url.url) from exc
    info = head_info(result.meta)
    if pinned is not None and not same_object(pinned, info):
        raise _changed(url, pinned, info)
    got = tuple(result.range)
    if got != (start, min(end, info.size)):
        safe = redact_url(url.url)
        raise MediaFetchError(f"{safe}: asked for bytes {start}-{end - 1}, got {got[0]}-{got[1] - 1}", url=safe)
    return result, info


async def stream_into(
    result: Any, file: BinaryIO, url: MediaUrl, expected: int, on_bytes: Callable[[int], None]
) -> None:
    """Copy the body of a ranged GET into ``file``, checking its length; a cut body is retryable."""
    written = 0
    try:
        async for chunk in result.stream(min_chunk_size=_STREAM_CHUNK):
            file.write(chunk)
            written += len(chunk)
            on_bytes(len(chunk))
    except (ObstoreError, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, ConnectionError | TimeoutError):
            raise  # a local write error (disk full) is not a transfer failure
        safe = redact_url(url.url)
        raise MediaFetchError(
            f"connection lost after {written} of {expected} bytes of {safe}", url=safe, retryable=True
        ) from exc
    if written != expected:
        safe = redact_url(url.url)
        raise MediaFetchError(
            f"incomplete body for {safe}: got {written} of {expected} bytes", url=safe, retryable=True
        )


def _changed(url: MediaUrl, pinned: ObjectInfo, now: ObjectInfo | None) -> MediaChanged:
    safe = redact_url(url.url)
    was = describe(pinned)
    became = f"it now has {describe(now)}" if now is not None else "the server refused that version (HTTP 412)"
    return MediaChanged(
        f"{safe} changed while it was being read (it had {was}; {became}); read it again for the new version",
        url=safe,
        status=None if now is not None else 412,
    )
