"""io/fetch.py against the real fault-injecting HTTP server (and moto S3): retries, timeouts, lengths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mediatable.config import Settings, load_settings
from mediatable.errors import MediaAccessDenied, MediaFetchError, MediaFetchTimeout, MediaNotFound
from mediatable.io.cache import FileCache
from mediatable.io.fetch import fetch_to_path, head
from mediatable.io.objects import ObjectStores
from mediatable.io.transfer import RetryPolicy, parse_retry_after, retrying_sync
from mediatable.io.urls import parse_url
from servers.cloud import S3Server
from servers.http import FaultServer

FAST = RetryPolicy(max_retries=3, backoff=0.01, max_backoff=0.05, throttle_backoff=0.3)


def _settings(**overrides: object) -> Settings:
    return load_settings("/nonexistent-home-for-tests", environ={}, **overrides)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty folder for downloads (tmp_path also holds the test's home)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def stores() -> ObjectStores:
    return ObjectStores(_settings(connect_timeout=2.0, request_timeout=5.0), instance_credentials=False)


def _fetch(stores: ObjectStores, url: str, dest: Path, policy: RetryPolicy = FAST) -> bytes:
    fetch_to_path(stores, parse_url(url), dest, policy=policy)
    return dest.read_bytes()


# -- policy ---------------------------------------------------------------------------------


def test_policy_from_settings_and_backoff_growth() -> None:
    policy = RetryPolicy.from_settings(_settings(max_retries=4, retry_backoff=0.5))
    assert (policy.max_retries, policy.backoff) == (4, 0.5)
    upper = [policy.delay(n, rng=lambda a, b: b) for n in range(1, 5)]
    lower = [policy.delay(n, rng=lambda a, b: a) for n in range(1, 5)]
    assert upper == [0.5, 1.0, 2.0, 4.0]
    assert lower == [0.25, 0.5, 1.0, 2.0]  # equal jitter: never less than half the step
    assert RetryPolicy(backoff=10, max_backoff=15).delay(9, rng=lambda a, b: b) == 15
    assert RetryPolicy(throttle_backoff=2.0).delay(1, throttled=True, rng=lambda a, b: b) == 2.0
    assert RetryPolicy(max_retry_after=30).delay(1, retry_after=100) == 30


def test_should_retry_only_transient_errors_within_budget() -> None:
    policy = RetryPolicy(max_retries=2)
    transient = MediaFetchError("503", status=503, retryable=True)
    assert policy.should_retry(transient, 0) and policy.should_retry(transient, 1)
    assert not policy.should_retry(transient, 2)
    assert not policy.should_retry(MediaFetchError("400", status=400), 0)
    assert not policy.should_retry(MediaNotFound("gone"), 0)
    assert policy.should_retry(MediaFetchTimeout("slow"), 0)


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("later") is None


def test_a_known_retry_after_replaces_the_backoff() -> None:
    """obstore 0.12 does not expose response headers, but an error that carries one is honored."""
    error = MediaFetchError("throttled", status=429, retryable=True)
    error.retry_after = "2"  # type: ignore[attr-defined]
    calls = iter([error, error])
    slept: list[float] = []

    def call() -> str:
        for exc in calls:
            raise exc
        return "done"

    url = parse_url("https://example.com/a.jpg")  # the error's own value wins: no probe is sent
    assert retrying_sync(call, FAST, slept.append, url) == "done"
    assert slept == [2.0, 2.0]


# -- transfers ------------------------------------------------------------------------------


def test_streams_to_file_and_returns_metadata(http_server: FaultServer, stores: ObjectStores, out: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    url = http_server.put("fetch/big.bin", data)
    seen: list[int] = []
    info = fetch_to_path(stores, parse_url(url), out / "big.bin", policy=FAST, on_bytes=seen.append)
    assert (out / "big.bin").read_bytes() == data
    assert info.size == len(data) == sum(seen)
    assert info.etag and info.last_modified is not None
    assert [p.name for p in out.iterdir()] == ["big.bin"]  # no temp file left
    assert head(stores, parse_url(url), policy=FAST) == info


def test_5xx_is_retried_then_succeeds(http_server: FaultServer, stores: ObjectStores, out: Path) -> None:
    url = http_server.put("fetch/flaky.bin", b"payload")
    http_server.set_fault("fetch/flaky.bin", status=503, times=2, methods=("GET",))
    assert _fetch(stores, url, out / "f") == b"payload"
    assert http_server.count("fetch/flaky.bin") == 3


def test_5xx_gives_up_after_max_retries(http_server: FaultServer, stores: ObjectStores, out: Path) -> None:
    url = http_server.put("fetch/down.bin", b"payload")
    http_server.set_fault("fetch/down.bin", status=500)
    with pytest.raises(MediaFetchError) as info:
        _fetch(stores, url, out / "f", RetryPolicy(max_retries=2, backoff=0.01))
    assert info.value.status == 500 and info.value.is_retryable
    assert http_server.count("fetch/down.bin") == 3
    assert not list(out.iterdir())


@pytest.mark.parametrize(("status", "error"), [(404, MediaNotFound), (403, MediaAccessDenied), (400, MediaFetchError)])
def test_4xx_fails_fast_without_retry(
    http_server: FaultServer, stores: ObjectStores, out: Path, status: int, error: type[Exception]
) -> None:
    url = http_server.put("fetch/forbidden.bin", b"x")
    http_server.set_fault("fetch/forbidden.bin", status=status)
    with pytest.raises(error) as raised:
        _fetch(stores, url, out / "f")
    assert not raised.value.is_retryable  # type: ignore[attr-defined]
    assert http_server.count("fetch/forbidden.bin") == 1


def test_missing_object_is_media_not_found(http_server: FaultServer, stores: ObjectStores, out: Path) -> None:
    with pytest.raises(MediaNotFound):
        _fetch(stores, http_server.url("fetch/never-put.bin"), out / "f")
    assert http_server.count("fetch/never-put.bin") == 1


def test_429_is_retried_after_a_throttle_pause(http_server: FaultServer, stores: ObjectStores, out: Path) -> None:
    url = http_server.put("fetch/busy.bin", b"payload")
    http_server.set_fault("fetch/busy.bin", status=429, times=1, methods=("GET",))  # no Retry-After
    assert _fetch(stores, url, out / "f") == b"payload"
    first, probe, second = http_server.requests("fetch/busy.bin")
    assert (first.method, probe.method, second.method) == ("GET", "HEAD", "GET")
    # the server named no wait: the policy's throttle floor (0.3 s here) applies
    assert second.at - first.at >= FAST.throttle_backoff


def test_429_honors_retry_after(http_server: FaultServer, stores: ObjectStores, out: Path) -> None:
    url = http_server.put("fetch/slow-down.bin", b"payload")
    # the GET and the HEAD that asks again for the header (obstore does not pass it on) are throttled
    http_server.set_fault("fetch/slow-down.bin", status=429, retry_after=1.2, times=2)
    assert _fetch(stores, url, out / "f") == b"payload"
    first, probe, second = http_server.requests("fetch/slow-down.bin")
    assert probe.method == "HEAD" and second.at - first.at >= 1.2


def test_retry_after_is_probed_for_cache_downloads(http_server: FaultServer, clean_env: Path) -> None:
    url = http_server.put("fetch/cached-slow.bin", b"payload")
    http_server.set_fault("fetch/cached-slow.bin", status=429, retry_after=1.2, times=2)
    settings = load_settings(clean_env, environ={}, progress=False, retry_backoff=0.01)
    with FileCache(settings) as cache, cache.lease() as lease:
        assert lease.get(url).read_bytes() == b"payload"
    first, _, second = http_server.requests("fetch/cached-slow.bin")
    assert second.at - first.at >= 1.2


@pytest.mark.parametrize("fault", [{"short_body": 5000}, {"reset_after": 5000}])
def test_cut_bodies_are_retried(
    http_server: FaultServer, stores: ObjectStores, out: Path, fault: dict[str, int]
) -> None:
    data = os.urandom(200_000)
    url = http_server.put("fetch/cut.bin", data)
    http_server.set_fault("fetch/cut.bin", times=2, **fault)
    assert _fetch(stores, url, out / "f") == data
    assert http_server.count("fetch/cut.bin") == 3


def test_always_short_body_fails_retryable_and_leaves_nothing(
    http_server: FaultServer, stores: ObjectStores, out: Path
) -> None:
    url = http_server.put("fetch/short.bin", os.urandom(100_000))
    http_server.set_fault("fetch/short.bin", short_body=1000)
    with pytest.raises(MediaFetchError) as raised:
        _fetch(stores, url, out / "f", RetryPolicy(max_retries=1, backoff=0.01))
    assert raised.value.is_retryable
    assert http_server.count("fetch/short.bin") == 2
    assert not list(out.iterdir())


@pytest.mark.parametrize("status", [301, 302])
def test_redirects_are_followed(http_server: FaultServer, stores: ObjectStores, out: Path, status: int) -> None:
    http_server.put("fetch/new.bin", b"moved here")
    http_server.set_fault("fetch/old.bin", redirect="fetch/new.bin", redirect_status=status)
    assert _fetch(stores, http_server.url("fetch/old.bin"), out / "f") == b"moved here"


def test_stalled_response_times_out_and_is_retried(http_server: FaultServer, out: Path) -> None:
    slow_stores = ObjectStores(_settings(connect_timeout=2.0, request_timeout=0.3), instance_credentials=False)
    url = http_server.put("fetch/stall.bin", b"x")
    http_server.set_fault("fetch/stall.bin", latency=1.5)
    with pytest.raises(MediaFetchTimeout) as raised:
        _fetch(slow_stores, url, out / "f", RetryPolicy(max_retries=1, backoff=0.01))
    assert raised.value.is_retryable
    assert http_server.count("fetch/stall.bin") == 2


def test_slow_body_then_recovery(http_server: FaultServer, out: Path) -> None:
    slow_stores = ObjectStores(_settings(connect_timeout=2.0, request_timeout=0.3), instance_credentials=False)
    data = os.urandom(64 * 1024)
    url = http_server.put("fetch/drip.bin", data)
    http_server.set_fault("fetch/drip.bin", slow_body=1.0, times=1)  # stalls longer than the read timeout
    assert _fetch(slow_stores, url, out / "f") == data
    assert http_server.count("fetch/drip.bin") == 2


def test_query_string_secrets_never_reach_errors(http_server: FaultServer, stores: ObjectStores, out: Path) -> None:
    http_server.put("fetch/signed.bin", b"x")
    http_server.set_fault("fetch/signed.bin", status=500)
    url = http_server.url("fetch/signed.bin") + "?X-Amz-Signature=TOPSECRET123&token=TOPSECRET456"
    with pytest.raises(MediaFetchError) as raised:
        _fetch(stores, url, out / "f", RetryPolicy(max_retries=1, backoff=0.01))
    text = f"{raised.value} {raised.value.url} {raised.value.__cause__} {raised.value!r}"
    assert "TOPSECRET" not in text
    assert "500" in str(raised.value)
    assert http_server.requests("fetch/signed.bin")[0].query.startswith("X-Amz-Signature=TOPSECRET123")


def test_s3_object_through_moto(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, out: Path, stores: ObjectStores
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "AWS_REGION": s3_server.region,
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    data = os.urandom(300_000)
    url = s3_server.put(s3_server.private_bucket, "fetch/obj.bin", data)
    info = fetch_to_path(stores, parse_url(url), out / "obj.bin", policy=FAST)
    assert (out / "obj.bin").read_bytes() == data and info.size == len(data) and info.etag
    with pytest.raises(MediaNotFound):
        _fetch(stores, f"s3://{s3_server.private_bucket}/fetch/missing.bin", out / "m")
