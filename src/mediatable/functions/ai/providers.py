"""API-key providers (OpenAI and servers speaking its API): clients, bounded concurrency, retries, errors.

Lifecycle: a :class:`Providers` belongs to a session (`mt.init()` builds it from the settings'
`providers` and makes it the current one; closing the session closes it). Each provider gets, on
first use, one `openai.OpenAI` client and one pool of `max_concurrency` request threads shared by
every column and query of the process, so a provider never sees more requests at once than that.

Retries: a 408, 409, 429 or 5xx answer, a timeout or a broken connection is tried again up to
`max_retries` times. A 429 pauses *every* request to that provider for as long as its
`Retry-After` (or `retry-after-ms`) says, since the limit is the provider's, not the request's;
without one, delays start at `retry_backoff` and double (at most 30 s), with jitter. Other 4xx fail
at once. A failure is a :class:`~mediatable.errors.ProviderError` in that cell; its message names the
provider, the request and the server's reason, with the API key scrubbed out.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from mediatable.config import ProviderSettings, Settings, load_settings
from mediatable.errors import ConfigError, ProviderError
from mediatable.exprs import CellError
from mediatable.functions.ai._models import require

T = TypeVar("T")
X = TypeVar("X")

_RETRYABLE = {408, 409, 429}
_MAX_DELAY = 30.0
_MAX_RETRY_AFTER = 300.0  # a server asking for longer is answered with an error, not a stalled batch


class Provider:
    """One provider's client and request threads. Thread-safe; built by :meth:`Providers.get`."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()
        self._resume_at = 0.0  # monotonic time before which no request may start (after a 429)
        self._pool = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix=f"mediatable-{name}")

    def __repr__(self) -> str:
        return f"<Provider {self.name} at {self.settings.base_url or 'the default URL'}>"

    @property
    def client(self) -> Any:
        """The `openai.OpenAI` client (its own retries are off: :meth:`call` retries)."""
        with self._lock:
            if self._client is None:
                openai = require("openai", "openai", f"the {self.name} provider")
                self._client = openai.OpenAI(
                    api_key=self.settings.api_key,
                    base_url=self.settings.base_url,
                    max_retries=0,
                    timeout=self.settings.timeout,
                )
            return self._client

    def map(self, send: Callable[[Any, X], T], items: Sequence[X], what: str) -> list[T | CellError]:
        """`send(client, item)` for every item, at most `max_concurrency` at once; failures become cell errors."""
        futures = [self._pool.submit(self.call, send, item, what) for item in items]
        out: list[T | CellError] = []
        for future in futures:
            try:
                out.append(future.result())
            except ProviderError as exc:
                out.append(CellError.from_exception(exc))
        return out

    def call(self, send: Callable[[Any, X], T], item: X, what: str) -> T:
        """One request with retries (see the module docstring).

        Raises:
            ProviderError: the request failed for good; the message never holds the key.
        """
        openai = require("openai", "openai", f"the {self.name} provider")
        client = self.client
        for attempt in range(self.settings.max_retries + 1):
            self._wait_for_resume()
            try:
                return send(client, item)
            except openai.OpenAIError as exc:
                status, headers, retryable, detail = _classify(openai, exc)
                delay = _retry_after(headers)
                if delay is not None and delay > _MAX_RETRY_AFTER:
                    detail, retryable = f"{detail} (the server asks to wait {delay:.0f} s; giving up)", False
                if not retryable or attempt == self.settings.max_retries:
                    tries = f" (after {attempt + 1} attempts)" if attempt else ""
                    raise self._error(what, detail + tries, status, retryable) from exc
                if delay is None:
                    delay = min(self.settings.retry_backoff * 2**attempt, _MAX_DELAY) * (0.75 + random.random() / 2)
                if status == 429:
                    self._pause(delay)  # the limit is the provider's: every request waits
                else:
                    time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- internals ------------------------------------------------------------------------------
    def _pause(self, seconds: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def _wait_for_resume(self) -> None:
        while (wait := self._resume_at - time.monotonic()) > 0:
            time.sleep(wait)

    def _error(self, what: str, detail: str, status: int | None, retryable: bool) -> ProviderError:
        message = f"{self.name} {what} failed: {detail}"
        key = self.settings.api_key
        if key:
            message = message.replace(key, "***")
        return ProviderError(message, provider=self.name, status=status, retryable=retryable)


class Providers:
    """The providers of one session, by name; clients and threads are made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Providers {', '.join(sorted(self.settings.providers)) or 'none'}>"

    def get(self, name: str) -> Provider:
        """The provider called `name`.

        Raises:
            ConfigError: no such provider, or it has no API key (the message says where to put one).
        """
        with self._lock:
            provider = self._providers.get(name)
            if provider is None:
                provider = Provider(name, self.check(name))
                self._providers[name] = provider
            return provider

    def check(self, name: str) -> ProviderSettings:
        """The settings of provider `name`, checked for an API key (and a base URL, for non-OpenAI ones)."""
        settings = self.settings.providers.get(name)
        config = self.settings.home / "config.toml"
        env = name.upper().replace("-", "_")
        if settings is None:
            raise ConfigError(f"unknown AI provider {name!r}: add a [{name}] section (base_url, api_key) to {config}")
        if not settings.api_key:
            raise ConfigError(
                f"no API key for provider {name!r}: set {env}_API_KEY or api_key under [{name}] in {config}"
            )
        if name != "openai" and not settings.base_url:
            raise ConfigError(f"provider {name!r} needs a base_url under [{name}] in {config} (or {env}_BASE_URL)")
        return settings

    def close(self) -> None:
        with self._lock:
            for provider in self._providers.values():
                provider.close()
            self._providers.clear()


_current: list[Providers] = []  # the current session's providers (set by the session, like mt.init's session)


def activate(providers: Providers) -> None:
    """Make `providers` the ones provider functions use (called when a session starts)."""
    _current[:] = [providers]


def deactivate(providers: Providers) -> None:
    """Forget `providers` if they are the current ones (called when their session closes)."""
    if _current and _current[0] is providers:
        _current.clear()


def current() -> Providers:
    """The current session's providers; without a session, providers from the default settings."""
    if not _current:
        _current.append(Providers(load_settings()))
    return _current[0]


def _classify(openai: Any, exc: Exception) -> tuple[int | None, Mapping[str, str], bool, str]:
    """(status, response headers, retryable, detail) of an exception of the openai client."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return status, exc.response.headers, status in _RETRYABLE or status >= 500, f"HTTP {status}: {_reason(exc)}"
    retryable = isinstance(exc, openai.APIConnectionError)  # also timeouts; anything else is an unreadable answer
    return None, {}, retryable, f"{type(exc).__name__}: {exc}"


def _reason(exc: Any) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        body = body.get("error", body)
    if isinstance(body, Mapping):
        body = body.get("message", body)
    text = str(body if body is not None else exc.message)
    return text if len(text) <= 300 else text[:299] + "…"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asked to wait (`retry-after-ms`, or `Retry-After` in seconds or as a date).

    Examples:
        >>> _retry_after({"retry-after": "2"}), _retry_after({"retry-after-ms": "150"}), _retry_after({})
        (2.0, 0.15, None)
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(float(lowered["retry-after-ms"]) / 1000, 0.0)
        if "retry-after" in lowered:
            value = lowered["retry-after"]
            try:
                return max(float(value), 0.0)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
    return None
