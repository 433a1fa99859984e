"""Download one object to a local file: streamed, length-checked, retried.

This module is the one place where the retry policy lives (object stores are built with their own
retries disabled). A transfer is retried with exponential backoff and jitter when the failure is
transient — HTTP 5xx and 429, timeouts, connections reset or bodies cut short — and never for other
4xx answers: a missing or forbidden object stays missing or forbidden.

The body streams to disk in chunks; the whole object is never held in memory. After the last chunk
the byte count is checked against the size the server announced (Content-Length / object size); a
short body is a retryable :class:`~mediatable.errors.MediaFetchError`.

Examples:
    >>> policy = RetryPolicy(max_retries=3, backoff=0.5)
    >>> policy.delay(1, rng=lambda a, b: b)   # first retry: up to 0.5 s
    0.5
    >>> policy.delay(3, retry_after=7.0)       # a server's Retry-After wins
    7.0
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import http.client
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError as ObstoreError

from mediatable.config import Settings
from mediatable.errors import MediaAccessDenied, MediaError, MediaFetchError, MediaNotFound
from mediatable.io.objects import ObjectInfo, translate_error
from mediatable.io.urls import MediaUrl, redact_url

__all__ = [
    "RetryPolicy",
    "Stores",
    "fetch",
    "fetch_async",
    "fetch_to_path",
    "head",
    "head_async",
    "parse_retry_after",
    "probe_retry_after",
]

# Chunks handed from the transport to Python: big enough that the per-chunk cost vanishes, small
# enough that 32 parallel downloads stay within a few tens of MB of buffers.
_CHUNK = 1024 * 1024


class Stores(Protocol):
    """What fetching needs from :class:`mediatable.io.objects.ObjectStores`."""

    def resolve(self, url: MediaUrl) -> tuple[Any, str]: ...

    def head(self, url: MediaUrl) -> ObjectInfo: ...

    async def head_async(self, url: MediaUrl) -> ObjectInfo: ...

    def translate_error(self, exc: BaseException, url: str) -> MediaError: ...


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a transfer again.

    Delays grow exponentially from ``backoff`` (doubling per retry, capped at ``max_backoff``) with
    "equal jitter": a random delay between half and all of the step, so that many clients failing
    together do not retry together. A server's ``Retry-After`` replaces the computed delay (capped
    at ``max_retry_after``). A 429 without a known Retry-After waits at least ``throttle_backoff``.

    Attributes:
        max_retries: retries after the first attempt (0 disables retrying).
        backoff: the first delay, seconds.
        max_backoff: the longest computed delay, seconds.
        throttle_backoff: the shortest delay after HTTP 429 when the server named none, seconds.
        max_retry_after: the longest Retry-After honored, seconds.

    Examples:
        >>> RetryPolicy.from_settings(Settings(max_retries=2, retry_backoff=0.1)).max_retries
        2
    """

    max_retries: int = 5
    backoff: float = 0.2
    max_backoff: float = 30.0
    throttle_backoff: float = 1.0
    max_retry_after: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy of ``settings`` (`max_retries`, `retry_backoff`)."""
        return cls(max_retries=max(settings.max_retries, 0), backoff=max(settings.retry_backoff, 0.0))

    def should_retry(self, error: MediaError, retries_done: int) -> bool:
        """Whether to try again after ``error`` when ``retries_done`` retries already happened.

        Examples:
            >>> RetryPolicy(max_retries=1).should_retry(MediaFetchError("x", retryable=True), 0)
            True
            >>> RetryPolicy().should_retry(MediaNotFound("gone"), 0)
            False
        """
        return error.is_retryable and retries_done < self.max_retries

    def delay(
        self,
        retry: int,
        retry_after: float | None = None,
        *,
        throttled: bool = False,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry).

        Args:
            retry: which retry this is, starting at 1.
            retry_after: the server's Retry-After in seconds, when it sent one.
            throttled: the failure was HTTP 429 (too many requests).
            rng: ``uniform(a, b)``; replaceable to make delays deterministic.

        Examples:
            >>> p = RetryPolicy(backoff=1.0, max_backoff=4.0)
            >>> [p.delay(n, rng=lambda a, b: b) for n in (1, 2, 3, 4)]
            [1.0, 2.0, 4.0, 4.0]
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        step = min(self.max_backoff, self.backoff * 2 ** max(retry - 1, 0))
        wait = rng(step / 2, step)
        return max(wait, self.throttle_backoff) if throttled else wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (delta seconds or an HTTP date).

    Examples:
        >>> parse_retry_after("3")
        3.0
        >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
        10.0
        >>> parse_retry_after("soon") is None
        True
    """
    if value is None:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _retry_after_of(error: MediaError) -> float | None:
    """The Retry-After an error carries, when the transport exposed one (obstore 0.12 does not)."""
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return parse_retry_after(value) if isinstance(value, str) else None


def _info(meta: Any) -> ObjectInfo:
    return ObjectInfo(
        size=int(meta["size"]),
        etag=meta.get("e_tag"),
        last_modified=meta.get("last_modified"),
        version=meta.get("version"),
    )


def _pause(error: MediaError, retries: int, policy: RetryPolicy, retry_after: float | None) -> float:
    throttled = getattr(error, "status", None) == 429
    return policy.delay(retries, retry_after, throttled=throttled)


def _asks_to_wait(error: MediaError, url: MediaUrl) -> bool:
    """An HTTP(S) answer that may carry Retry-After, which the transport did not pass on."""
    return url.kind == "http" and getattr(error, "status", None) in (429, 503) and _retry_after_of(error) is None


def probe_retry_after(url: MediaUrl, timeout: float = 5.0) -> float | None:
    """Ask an HTTP(S) server that just answered 429/503 how long to wait: its Retry-After, in seconds.

    obstore 0.12 does not expose the headers of a failed response, so the GET's Retry-After is lost;
    rate limits apply per client, so a HEAD of the same URL is answered with the same advice. Any
    failure of the probe gives None (the policy's own backoff applies).

    Examples:
        >>> from mediatable.io.urls import parse_url
        >>> probe_retry_after(parse_url("s3://bucket/a.jpg")) is None  # only HTTP(S) servers send it
        True
    """
    if url.kind != "http":
        return None
    parts = urlsplit(url.url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("HEAD", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        if response.status in (429, 503):
            return parse_retry_after(response.getheader("Retry-After"))
        return None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _with_retries(call: Callable[[], Any], policy: RetryPolicy, sleep: Callable[[float], None], url: MediaUrl) -> Any:
    retries = 0
    while True:
        try:
            return call()
        except MediaError as error:
            if not policy.should_retry(error, retries):
                raise
            retries += 1
            retry_after = probe_retry_after(url) if _asks_to_wait(error, url) else _retry_after_of(error)
            sleep(_pause(error, retries, policy, retry_after))


async def _with_retries_async(call: Callable[[], Awaitable[Any]], policy: RetryPolicy, url: MediaUrl) -> Any:
    retries = 0
    while True:
        try:
            return await call()
        except MediaError as error:
            if not policy.should_retry(error, retries):
                raise
            retries += 1
            if _asks_to_wait(error, url):
                retry_after = await asyncio.to_thread(probe_retry_after, url)
            else:
                retry_after = _retry_after_of(error)
            await asyncio.sleep(_pause(error, retries, policy, retry_after))


def head(
    stores: Stores, url: MediaUrl, *, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep
) -> ObjectInfo:
    """The object's metadata (size, etag, last modified), retried like a download.

    Raises:
        MediaError: the object cannot be reached (after retries, when the failure is transient).

    Examples:
        >>> info = head(stores, parse_url("https://example.com/a.jpg"), policy=RetryPolicy())  # doctest: +SKIP
    """
    return _with_retries(lambda: stores.head(url), policy, sleep, url)


async def head_async(stores: Stores, url: MediaUrl, *, policy: RetryPolicy) -> ObjectInfo:
    """:func:`head` for event loops.

    Examples:
        >>> info = await head_async(stores, parse_url("s3://bucket/a.jpg"), policy=RetryPolicy())  # doctest: +SKIP
    """
    return await _with_retries_async(lambda: stores.head_async(url), policy, url)


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
    return await _with_retries_async(lambda: _attempt_async(stores, url, sink, on_bytes), policy, url)


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
    return _with_retries(lambda: _attempt(stores, url, sink, on_bytes), policy, sleep, url)


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


async def _attempt_async(
    stores: Stores,
    url: MediaUrl,
    sink: Callable[[ObjectInfo], Awaitable[BinaryIO]],
    on_bytes: Callable[[int], None] | None,
) -> ObjectInfo:
    try:
        store, path = stores.resolve(url)
        result = await obstore.get_async(store, path)
        info = _info(result.meta)
    except MediaError:
        raise
    except (ObstoreError, OSError) as exc:
        raise stores.translate_error(exc, url.url) from exc
    body = _Body(await sink(info), url, info.size, on_bytes)
    if info.size <= _CHUNK:
        # A body that fits one chunk is one chunk anyway: one await instead of two on the stream.
        try:
            body.write(await result.bytes_async())
        except (ObstoreError, OSError) as exc:
            raise body.error(exc) from exc
        return body.finish(info)
    stream = result.stream(min_chunk_size=_CHUNK)
    while True:
        try:
            chunk = await stream.__anext__()
        except StopAsyncIteration:
            break
        except (ObstoreError, OSError) as exc:
            raise body.error(exc) from exc
        body.write(chunk)
    return body.finish(info)


class _Body:
    """One attempt's body on its way to disk: counts bytes, reports progress, checks the length.

    Local write errors (disk full) are not transfer failures: `write` lets them propagate as OSError.
    """

    def __init__(self, file: BinaryIO, url: MediaUrl, size: int, on_bytes: Callable[[int], None] | None) -> None:
        _rewind(file)
        self.file, self.url, self.size, self.on_bytes = file, url, size, on_bytes
        self.written = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
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
