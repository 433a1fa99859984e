"""Download one object to a local file: streamed, length-checked.

Retries come from :mod:`mediatable.io.transfer` (object stores are built with their own retries
disabled): a GET is retried with exponential backoff and jitter when the failure is transient —
HTTP 5xx and 429, timeouts, connections reset or bodies cut short — and never for other 4xx
answers: a missing or forbidden object stays missing or forbidden.

The body streams to disk in chunks; the whole object is never held in memory. After the last chunk
the byte count is checked against the size the server announced (Content-Length / object size); a
short body is a retryable :class:`~mediatable.errors.MediaFetchError`.

Examples:
    >>> from mediatable.io.urls import parse_url
    >>> info = fetch_to_path(stores, parse_url("https://example.com/a.jpg"), "/tmp/a.jpg",
    ...                      policy=RetryPolicy())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import obstore
from obstore.exceptions import BaseError as ObstoreError

from mediatable.errors import MediaAccessDenied, MediaError, MediaFetchError, MediaFetchTimeout, MediaNotFound
from mediatable.io.objects import ObjectInfo, translate_error
from mediatable.io.transfer import RetryPolicy, StallPolicy, retrying, retrying_sync
from mediatable.io.urls import MediaUrl, redact_url

__all__ = [
    "Downloaded",
    "RetryPolicy",
    "Stores",
    "download_attempt",
    "fetch",
    "fetch_async",
    "fetch_to_path",
    "head",
    "head_async",
    "head_attempt",
    "last_modified_timestamp",
]

# Chunks handed from the transport to Python: big enough that the per-chunk cost vanishes, small
# enough that 32 parallel downloads stay within a few tens of MB of buffers.
_CHUNK = 1024 * 1024
# Chunks of async downloads: each must arrive within the stall allowance, so smaller (256 KiB at
# 16 KiB/s is 16 s, within the 20 s of request_timeout).
_STREAM_CHUNK = 256 * 1024


class Stores(Protocol):
    """What fetching needs from :class:`mediatable.io.objects.ObjectStores`."""

    def resolve(self, url: MediaUrl) -> tuple[Any, str]: ...

    def head(self, url: MediaUrl) -> ObjectInfo: ...

    async def head_async(self, url: MediaUrl) -> ObjectInfo: ...

    def translate_error(self, exc: BaseException, url: str) -> MediaError: ...


def _info(meta: Any) -> ObjectInfo:
    return ObjectInfo(
        size=int(meta["size"]),
        etag=meta.get("e_tag"),
        last_modified=meta.get("last_modified"),
        version=meta.get("version"),
    )


def head(
    stores: Stores, url: MediaUrl, *, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep
) -> ObjectInfo:
    """The object's metadata (size, etag, last modified), retried like a download.

    Raises:
        MediaError: the object cannot be reached (after retries, when the failure is transient).

    Examples:
        >>> info = head(stores, parse_url("https://example.com/a.jpg"), policy=RetryPolicy())  # doctest: +SKIP
    """
    return retrying_sync(lambda: stores.head(url), policy, sleep, url)


async def head_async(stores: Stores, url: MediaUrl, *, policy: RetryPolicy) -> ObjectInfo:
    """:func:`head` for event loops.

    Examples:
        >>> info = await head_async(stores, parse_url("s3://bucket/a.jpg"), policy=RetryPolicy())  # doctest: +SKIP
    """
    return await retrying(lambda: stores.head_async(url), policy, url)


async def fetch_async(
    stores: Stores,
    url: MediaUrl,
    sink: Callable[[ObjectInfo], Awaitable[BinaryIO]],
    *,
    policy: RetryPolicy,
    on_bytes: Callable[[int], None] | None = None,
) -> ObjectInfo:
    """:func:`fetch` for event loops: obstore's async API, ``await sink(info)``, ``asyncio.sleep`` between attempts.

    Many transfers share one thread this way; the file cache runs all its downloads like this.

    Examples:
        >>> async def sink(info):  # doctest: +SKIP
        ...     return open("/tmp/a.part", "w+b")
        >>> info = await fetch_async(stores, parse_url("s3://b/a.jpg"), sink, policy=RetryPolicy())  # doctest: +SKIP
    """
    return (await retrying(lambda: download_attempt(stores, url, sink, on_bytes), policy, url)).info


def fetch(
    stores: Stores,
    url: MediaUrl,
    sink: Callable[[ObjectInfo], BinaryIO],
    *,
    policy: RetryPolicy,
    on_bytes: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ObjectInfo:
    """Stream one object into the file ``sink`` chooses, retrying transient failures.

    ``sink(info)`` is called once per attempt, when the response headers have arrived and the
    object's size is known, and returns an open binary file; the file is rewound and truncated
    before the body is written, so a retry never leaves bytes of an earlier attempt behind. The
    caller owns the file (flush, rename, close).

    Args:
        stores: resolves the URL to an object store.
        url: the object.
        sink: picks the file to write for this attempt (it may reserve cache space for ``info.size``).
        policy: the retry policy.
        on_bytes: called with the length of every chunk written (progress bars).
        sleep: the function that waits between attempts.

    Returns:
        The object's metadata from the successful response.

    Raises:
        MediaNotFound, MediaAccessDenied: at once, without retrying.
        MediaFetchError, MediaFetchTimeout: when retries are exhausted; a short body is a
            retryable MediaFetchError.

    Examples:
        >>> with open("/tmp/a.jpg.part", "wb") as f:  # doctest: +SKIP
        ...     info = fetch(stores, parse_url("s3://bucket/a.jpg"), lambda info: f, policy=RetryPolicy())
    """
    return retrying_sync(lambda: _attempt(stores, url, sink, on_bytes), policy, sleep, url)


def fetch_to_path(
    stores: Stores,
    url: MediaUrl,
    dest: str | os.PathLike[str],
    *,
    policy: RetryPolicy,
    on_bytes: Callable[[int], None] | None = None,
) -> ObjectInfo:
    """Download ``url`` to ``dest`` atomically: a temp file in the same folder, renamed when complete.

    Examples:
        >>> fetch_to_path(stores, parse_url("https://example.com/a.jpg"), "/tmp/a.jpg",
        ...               policy=RetryPolicy())  # doctest: +SKIP
    """
    target = Path(dest)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w+b") as file:
            info = fetch(stores, url, lambda _info: file, policy=policy, on_bytes=on_bytes)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return info


def _attempt(
    stores: Stores,
    url: MediaUrl,
    sink: Callable[[ObjectInfo], BinaryIO],
    on_bytes: Callable[[int], None] | None,
) -> ObjectInfo:
    try:
        store, path = stores.resolve(url)
        result = obstore.get(store, path)
        info = _info(result.meta)
    except MediaError:
        raise
    except (ObstoreError, OSError) as exc:
        raise stores.translate_error(exc, url.url) from exc
    body = _Body(sink(info), url, info.size, on_bytes)
    stream = result.stream(min_chunk_size=_CHUNK)
    while True:
        try:
            chunk = next(stream)
        except StopIteration:
            break
        except (ObstoreError, OSError) as exc:
            raise body.error(exc) from exc
        body.write(chunk)
    return body.finish(info)


@dataclasses.dataclass(frozen=True)
class Downloaded:
    """What one successful download attempt gives: the object's metadata and the body's sha256 (if asked)."""

    info: ObjectInfo
    sha256: str | None = None


async def download_attempt(
    stores: Stores,
    url: MediaUrl,
    sink: Callable[[ObjectInfo], Awaitable[BinaryIO]],
    on_bytes: Callable[[int], None] | None = None,
    *,
    stall: StallPolicy | None = None,
    hashed: bool = False,
) -> Downloaded:
    """One attempt of :func:`fetch_async`, without retries: what :meth:`TransferStage.run` retries.

    Args:
        stores: resolves the URL to an object store.
        url: the object.
        sink: picks the file to write for this attempt, once the size is known.
        on_bytes: called with the length of every chunk written.
        stall: when to give up on a silent or trickling server (default :class:`StallPolicy`).
        hashed: also compute the body's sha256 (the file cache records it for ``cache verify``).

    Raises:
        MediaFetchTimeout: the server stalled (retryable).

    Examples:
        >>> got = await stage.run(url, lambda: download_attempt(stores, url, sink))  # doctest: +SKIP
    """
    stall = stall or StallPolicy()
    try:
        store, path = stores.resolve(url)
        async with asyncio.timeout(stall.timeout):
            result = await obstore.get_async(store, path)
        info = _info(result.meta)
    except MediaError:
        raise
    except TimeoutError as exc:
        raise _stalled(url, 0, None, stall) from exc
    except (ObstoreError, OSError) as exc:
        raise stores.translate_error(exc, url.url) from exc
    body = _Body(await sink(info), url, info.size, on_bytes, hashlib.sha256() if hashed else None)
    try:
        if info.size <= _STREAM_CHUNK:
            # A body that fits one chunk is one chunk anyway: one await instead of two on the stream.
            async with asyncio.timeout(stall.allowance(info.size)):
                chunk = await result.bytes_async()
            body.write(chunk)
        else:
            stream = result.stream(min_chunk_size=_STREAM_CHUNK)
            while True:
                async with asyncio.timeout(stall.allowance(min(_STREAM_CHUNK, info.size - body.written))):
                    try:
                        chunk = await stream.__anext__()
                    except StopAsyncIteration:
                        break
                body.write(chunk)
    except TimeoutError as exc:
        raise _stalled(url, body.written, info.size, stall) from exc
    except (ObstoreError, OSError) as exc:
        raise body.error(exc) from exc
    body.finish(info)
    return Downloaded(info, None if body.hasher is None else body.hasher.hexdigest())


async def head_attempt(stores: Stores, url: MediaUrl, *, stall: StallPolicy | None = None) -> ObjectInfo:
    """One HEAD request (no retries), cut off like a download when the server stalls.

    Examples:
        >>> info = await stage.run(url, lambda: head_attempt(stores, url))  # doctest: +SKIP
    """
    stall = stall or StallPolicy()
    try:
        async with asyncio.timeout(stall.timeout):
            return await stores.head_async(url)
    except TimeoutError as exc:
        if isinstance(exc, MediaError):
            raise
        raise _stalled(url, 0, None, stall) from exc


def _stalled(url: MediaUrl, written: int, size: int | None, stall: StallPolicy) -> MediaFetchTimeout:
    where = "before the response headers" if size is None else f"after {written} of {size} bytes"
    rate = f" or slower than {stall.min_rate / 1024:g} KiB/s" if stall.min_rate > 0 and size is not None else ""
    return MediaFetchTimeout(
        f"the server of {redact_url(url.url)} stalled {where}: no progress for {stall.timeout:g} s{rate}"
        " (settings request_timeout, min_transfer_rate)",
        url=redact_url(url.url),
    )


class _Body:
    """One attempt's body on its way to disk: counts bytes, reports progress, checks the length.

    Local write errors (disk full) are not transfer failures: `write` lets them propagate as OSError.
    """

    def __init__(
        self,
        file: BinaryIO,
        url: MediaUrl,
        size: int,
        on_bytes: Callable[[int], None] | None,
        hasher: Any = None,
    ) -> None:
        _rewind(file)
        self.file, self.url, self.size, self.on_bytes, self.hasher = file, url, size, on_bytes, hasher
        self.written = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        if self.hasher is not None:
            self.hasher.update(chunk)
        self.written += len(chunk)
        if self.on_bytes is not None:
            self.on_bytes(len(chunk))

    def error(self, exc: BaseException) -> MediaError:
        """The transfer failure `exc`, worded with how much of the body had arrived."""
        return _body_error(exc, self.url, self.written, self.size)

    def finish(self, info: ObjectInfo) -> ObjectInfo:
        _check_length(self.url, self.written, self.size)
        self.file.flush()
        return info


def _rewind(file: BinaryIO) -> None:
    """Empty the file for this attempt. A fresh file is left alone: truncating an empty file makes
    ext4 flush it on close (auto_da_alloc), which tripled the cost of closing a downloaded file."""
    if file.seek(0, os.SEEK_END):
        file.seek(0)
        file.truncate()


def _check_length(url: MediaUrl, written: int, size: int) -> None:
    if written != size:
        raise MediaFetchError(
            f"incomplete body for {redact_url(url.url)}: got {written} of {size} bytes",
            url=redact_url(url.url),
            retryable=True,
        )


def _body_error(exc: BaseException, url: MediaUrl, written: int, size: int) -> MediaError:
    error = translate_error(exc, url.url)
    if isinstance(error, MediaNotFound | MediaAccessDenied) or error.is_retryable:
        return error
    # The headers arrived, so the object exists and may be read: a body that breaks off is a
    # transport failure whatever the backend calls it, and worth another attempt.
    return MediaFetchError(
        f"connection lost after {written} of {size} bytes of {redact_url(url.url)}: {error}",
        url=redact_url(url.url),
        retryable=True,
    )


def last_modified_timestamp(value: datetime | float | None) -> float | None:
    """A last-modified value as POSIX seconds (None stays None).

    Examples:
        >>> from datetime import timezone
        >>> last_modified_timestamp(datetime(1970, 1, 1, 0, 1, tzinfo=timezone.utc))
        60.0
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)
