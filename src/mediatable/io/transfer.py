"""The transfer stage: one bounded, retrying stage for every download and upload of a session.

Transfers run as coroutines on one event-loop thread (obstore's async API) rather than on a pool
of threads: the bookkeeping around a transfer (locks, reserved space, rename, index) then runs
without 32 threads competing for the GIL. Measured here: as fast as a 32-thread pool for bare
transfers, and about a fifth less CPU once the file cache's bookkeeping is added.

:class:`TransferStage` owns the loop thread, the limit on transfers in flight
(``settings.max_concurrent_downloads``, shared by downloads and uploads) and the
:class:`RetryPolicy`. One attempt of a transfer is a coroutine function; the stage runs it holding
one slot and retries transient failures (HTTP 5xx and 429, timeouts, resets, bodies cut short),
never other 4xx answers. Waiting between attempts holds no slot.

Usage, from any thread (an upload looks exactly like a download)::

    stage = session.transfers                     # TransferStage.from_settings(settings) elsewhere
    future = stage.submit(stage.run(url, lambda: obstore.put_async(store, key, data)))
    future.result()                               # or many: stage.submit_many([...])

A transfer that stalls (no progress for ``request_timeout``, or slower than ``min_transfer_rate``)
fails its attempt with a retryable timeout (:class:`StallPolicy`; an upload bounds its attempt with
``asyncio.timeout(stage.stall.allowance(nbytes))``).

Blocking waits that other work must be able to end (a lock another process holds) go to
:func:`wait_in_thread`: a thread of their own, never a thread of a bounded pool.

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
import functools
import http.client
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from mediatable.config import Settings
from mediatable.errors import CacheError, MediaError
from mediatable.io.urls import MediaUrl

__all__ = [
    "ProgressBar",
    "ProgressBars",
    "RetryPolicy",
    "StallPolicy",
    "TransferStage",
    "parse_retry_after",
    "probe_retry_after",
    "retrying",
    "retrying_sync",
    "wait_in_thread",
]

_T = TypeVar("_T")


class ProgressBar(Protocol):
    """What a transfer shows progress on (objects and bytes); `exec.status` draws one."""

    def advance(self, objects: int, nbytes: int) -> None: ...

    def close(self) -> None: ...


class ProgressBars(Protocol):
    """Makes progress bars: ``bars(description, total_objects, show)``; ``show`` None means the settings' default."""

    def __call__(self, description: str, total: int | None, show: bool | None) -> ProgressBar: ...


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
            >>> from mediatable.errors import MediaFetchError, MediaNotFound
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


@dataclasses.dataclass(frozen=True)
class StallPolicy:
    """When a transfer counts as stalled: a retryable :class:`~mediatable.errors.MediaFetchTimeout`.

    The response headers must arrive within ``timeout`` seconds, and each piece of the body of
    ``n`` bytes within ``max(timeout, n / min_rate)``: a server that sends nothing, or trickles
    bytes slower than ``min_rate`` per second, is cut off. With the defaults (20 s, 16 KiB/s, and 5
    retries) a stalled server costs a cell at most about two minutes in all.

    Attributes:
        timeout: seconds without the expected progress (setting ``request_timeout``).
        min_rate: bytes per second below which a body counts as stalled (setting
            ``min_transfer_rate``; 0 turns the rate check off).

    Examples:
        >>> StallPolicy(timeout=20, min_rate=16 * 1024).allowance(1024 * 1024)  # 1 MiB at 16 KiB/s
        64.0
        >>> StallPolicy(timeout=20, min_rate=16 * 1024).allowance(1000)
        20.0
    """

    timeout: float = 20.0
    min_rate: float = 16 * 1024.0

    @classmethod
    def from_settings(cls, settings: Settings) -> StallPolicy:
        """The policy of ``settings`` (`request_timeout`, `min_transfer_rate`)."""
        return cls(timeout=max(float(settings.request_timeout), 0.001), min_rate=max(settings.min_transfer_rate, 0))

    def allowance(self, nbytes: int) -> float:
        """Seconds allowed for the next ``nbytes`` bytes of a body."""
        if self.min_rate <= 0:
            return float(self.timeout)
        return max(float(self.timeout), nbytes / self.min_rate)


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


def _retry_after_of(error: MediaError) -> float | None:
    """The Retry-After an error carries, when the transport exposed one (obstore 0.12 does not)."""
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return parse_retry_after(value) if isinstance(value, str) else None


def _pause(error: MediaError, retries: int, policy: RetryPolicy, retry_after: float | None) -> float:
    throttled = getattr(error, "status", None) == 429
    return policy.delay(retries, retry_after, throttled=throttled)


def _asks_to_wait(error: MediaError, url: MediaUrl) -> bool:
    """An HTTP(S) answer that may carry Retry-After, which the transport did not pass on."""
    return url.kind == "http" and getattr(error, "status", None) in (429, 503) and _retry_after_of(error) is None


def retrying_sync(call: Callable[[], _T], policy: RetryPolicy, sleep: Callable[[float], None], url: MediaUrl) -> _T:
    """Run ``call`` until it succeeds, fails for good, or the policy's retries are spent (blocking).

    Examples:
        >>> from mediatable.io.urls import parse_url
        >>> retrying_sync(lambda: 42, RetryPolicy(), time.sleep, parse_url("s3://b/a.jpg"))
        42
    """
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


async def retrying(call: Callable[[], Awaitable[_T]], policy: RetryPolicy, url: MediaUrl) -> _T:
    """:func:`retrying_sync` for event loops: ``await call()``, ``asyncio.sleep`` between attempts.

    Examples:
        >>> from mediatable.io.urls import parse_url
        >>> async def answer(): return 42
        >>> asyncio.run(retrying(answer, RetryPolicy(), parse_url("s3://b/a.jpg")))
        42
    """
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


class TransferStage:
    """The event-loop thread every transfer of a session runs on, with one limit on transfers in flight.

    Lifecycle: the thread starts on the first :meth:`submit`; :meth:`close` cancels what still runs
    (their ``finally`` blocks clean up) and stops it. All methods are thread-safe.

    Examples:
        >>> stage = TransferStage(concurrency=4, policy=RetryPolicy())
        >>> async def attempt():
        ...     return "bytes"
        >>> from mediatable.io.urls import parse_url
        >>> stage.submit(stage.run(parse_url("s3://b/a.jpg"), attempt)).result()
        'bytes'
        >>> stage.close()
    """

    def __init__(self, concurrency: int, policy: RetryPolicy, stall: StallPolicy | None = None) -> None:
        self.concurrency = max(int(concurrency), 1)
        self.policy = policy
        self.stall = stall or StallPolicy()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate: asyncio.Semaphore | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> TransferStage:
        """A stage with ``settings.max_concurrent_downloads`` slots and the settings' retry and stall policies."""
        return cls(
            settings.max_concurrent_downloads, RetryPolicy.from_settings(settings), StallPolicy.from_settings(settings)
        )

    def submit(self, coro: Coroutine[Any, Any, _T]) -> Future[_T]:
        """Run a coroutine on the stage's loop; the future is thread-safe and cancelling it cancels the task."""
        return self.submit_many([coro])[0]

    def submit_many(self, coros: list[Coroutine[Any, Any, _T]]) -> list[Future[_T]]:
        """:meth:`submit` for many coroutines, with one wake-up of the loop.

        Raises:
            CacheError: the stage is closed (the coroutines are closed, never to run).
        """
        futures: list[Future[_T]] = [Future() for _ in coros]

        def start() -> None:
            for coro, future in zip(coros, futures, strict=True):
                if future.cancelled():  # given up before it started
                    coro.close()
                    continue
                task = loop.create_task(coro)
                task.add_done_callback(functools.partial(_settle, future))
                future.add_done_callback(functools.partial(_cancel_task, loop, task))

        with self._lock:
            if self._closed:
                for coro in coros:
                    coro.close()  # else it warns at garbage collection that it was never awaited
                raise CacheError("the transfer stage is closed")
            loop = self._started()
            # Queued under the lock, so ahead of close()'s cancel_all: every task started here is settled.
            loop.call_soon_threadsafe(start)
        return futures

    async def run(self, url: MediaUrl, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """One transfer of ``url``: each attempt holds a slot; transient failures are retried per the policy.

        Runs on the stage's loop (``stage.submit(stage.run(...))`` from other threads).
        """
        return await retrying(lambda: self._gated(attempt), self.policy, url)

    async def _gated(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        assert self._gate is not None
        async with self._gate:
            return await attempt()

    def close(self) -> None:
        """Cancel what still runs (its finally blocks clean up), then stop the thread."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def cancel_all() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=60)
        if not thread.is_alive():
            loop.close()

    def _started(self) -> asyncio.AbstractEventLoop:
        """The running loop, started on first use; called with the lock held."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._gate = asyncio.Semaphore(self.concurrency)
            self._thread = threading.Thread(target=self._loop.run_forever, name="mt-transfer", daemon=True)
            self._thread.start()
        return self._loop


def wait_in_thread(wait: Callable[[], _T]) -> Future[_T]:
    """Run a blocking wait on a thread of its own; the future gets its outcome (await it with `asyncio.wrap_future`).

    Waits for what another process holds must not take a thread of a bounded pool (asyncio's
    default executor has ``cpu_count + 4``): the work that ends such a wait may need one of those
    threads itself, and with every thread waiting, two processes wait for each other for good.
    Once the thread runs, cancelling the future does not stop the wait: a caller that must undo its
    outcome (release a lock it got too late) adds a done callback.

    Examples:
        >>> wait_in_thread(lambda: "got it").result()
        'got it'
    """
    outcome: Future[_T] = Future()

    def body() -> None:
        if not outcome.set_running_or_notify_cancel():
            return  # cancelled before it started: nothing to wait for
        try:
            outcome.set_result(wait())
        except BaseException as exc:
            outcome.set_exception(exc)

    threading.Thread(target=body, name="mt-transfer-wait", daemon=True).start()
    return outcome


def _settle(future: Future[_T], task: asyncio.Task[_T]) -> None:
    """Copy a finished task's outcome to its thread-safe future."""
    if future.done():
        return  # cancelled by the caller
    if task.cancelled():  # the stage closed under it
        future.set_exception(CacheError("the transfer stage closed before the transfer finished"))
    elif task.exception() is not None:
        future.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        future.set_result(task.result())


def _cancel_task(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], future: Future[Any]) -> None:
    if future.cancelled() and not loop.is_closed():
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(task.cancel)
