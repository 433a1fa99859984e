"""Object-store tests over HTTP(S): one store per origin, signed query strings, statuses, timeouts, basic auth and
scrubbed error bodies (the fault-injecting server and small per-test servers on 127.0.0.1)."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from obstore.store import HTTPStore

from mediatable.config import Settings
from mediatable.errors import (
    MediaAccessDenied,
    MediaFetchError,
    MediaFetchTimeout,
    MediaNotFound,
)
from mediatable.io.objects import ObjectStores, translate_error
from mediatable.io.objects.http import HttpPlanner, http_plan
from mediatable.io.objects.options import StoreContext
from mediatable.io.urls import MediaUrl, parse_url
from objects_support import local_server, make_stores, printed, raised, read
from servers.http import FaultServer

# -- HTTP -----------------------------------------------------------------------------------------------


def test_http_one_store_per_origin(http_server: FaultServer, clean_env: Path) -> None:
    a = http_server.put("dir/a.jpg", b"aaa")
    b = http_server.put("other/b c\u00e9.jpg", b"bbb")
    stores = make_stores(clean_env)
    assert read(stores, a) == b"aaa"
    assert read(stores, http_server.url("other/b%20c%C3%A9.jpg")) == b"bbb"
    store_a, path_a = stores.resolve(parse_url(a))
    store_b, path_b = stores.resolve(parse_url(b))
    assert store_a is store_b and (path_a, path_b) == ("dir/a.jpg", "other/b c\u00e9.jpg")
    info = stores.head(parse_url(a))
    assert info.size == 3 and info.etag and info.last_modified is not None


def test_http_query_string_kept_and_redirects_followed(http_server: FaultServer, clean_env: Path) -> None:
    http_server.put("signed/x.bin", b"signed bytes")
    url = http_server.url("signed/x.bin") + "?X-Amz-Signature=abc123&X-Amz-Expires=60"
    stores = make_stores(clean_env)
    assert read(stores, url) == b"signed bytes"
    assert http_server.requests("signed/x.bin")[-1].query == "X-Amz-Signature=abc123&X-Amz-Expires=60"

    http_server.put("moved/new.bin", b"new place")
    http_server.set_fault("moved/old.bin", redirect="moved/new.bin", redirect_status=301)
    assert read(stores, http_server.url("moved/old.bin")) == b"new place"


def test_http_paths_obstore_would_change_use_the_exact_url(http_server: FaultServer, clean_env: Path) -> None:
    http_server.put("br[1]/a|b.txt", b"brackets")
    url = http_server.url("br%5B1%5D/a%7Cb.txt")  # obstore would send '[', ']' and '|' unescaped
    stores = make_stores(clean_env)
    store, path = stores.resolve(parse_url(url))
    assert path == "" and isinstance(store, HTTPStore)
    assert read(stores, url) == b"brackets"


def test_http_urls_of_a_known_origin_reuse_what_it_shares(
    http_server: FaultServer, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    client = StoreContext.client

    def counted(context: StoreContext, overrides: Any, *, allow_http: bool = False) -> dict[str, Any]:
        built.append(context.settings.home.name)
        return client(context, overrides, allow_http=allow_http)

    monkeypatch.setattr(StoreContext, "client", counted)
    stores = make_stores(clean_env)
    first, _ = stores.resolve(parse_url(http_server.url("known/0.jpg")))
    for i in range(1, 50):
        assert stores.resolve(parse_url(http_server.url(f"known/{i}.jpg"))) == (first, f"known/{i}.jpg")
    assert len(built) == 1  # the origin's client options, once
    # URLs of that origin that need a store of their own still get one
    signed = http_server.url("known/s.jpg") + "?X-Amz-Signature=abc"
    http_server.put("known/s.jpg", b"signed")
    assert stores.resolve(parse_url(signed))[1] == "" and read(stores, signed) == b"signed"
    assert http_server.requests("known/s.jpg")[-1].query == "X-Amz-Signature=abc"
    odd, path = stores.resolve(parse_url(http_server.url("known/a%7Cb.jpg")))
    assert odd is not first and path == ""
    # past its bound a planner forgets the oldest origin, and plans it again the same way
    planner = HttpPlanner(StoreContext(Settings(home=clean_env), instance_credentials=False), max_origins=2)
    built.clear()
    plans = [planner.plan(parse_url(f"http://127.0.0.{n}:9/x.jpg")) for n in (1, 2, 3, 1, 3)]
    assert len(built) == 4 and plans[0].key == plans[3].key and plans[2].key == plans[4].key


@pytest.mark.parametrize(
    "url",
    [
        "http://h/a.jpg",
        "https://H.example.com:8443/a/b%20c%C3%A9.jpg",
        "https://h:443/a.jpg",
        "http://h",
        "http://h/",
        "http://h/a/",
        "http://h/.hidden/a",
        "http://h/a?",
        "http://h/a?X-Amz-Signature=s&v=1",
        "http://h?q=1",
        "http://h/a%2Fb.jpg",
        "http://h/br%5B1%5D/a%7Cb",
        "http://h/a;b=c/@x",
        "http://alice:s3cr%40t@h:81/a.jpg",
        "http://alice@h/a.jpg",
    ],
)
def test_http_plans_of_remembered_origins_match_a_fresh_plan(url: str) -> None:
    context = StoreContext(Settings(buckets={"http://h": {"user_agent": "t"}}), instance_credentials=False)
    planner = HttpPlanner(context)
    # normalized, and as given (unnormalized, with a fragment, with a tab urlsplit drops)
    variants = [parse_url(url), *(MediaUrl(text, "http", "", "") for text in (url, url + "#f", url + "/\tb"))]
    for media_url in variants * 2:  # the second round from the remembered origins
        want, got = http_plan(media_url, context), planner.plan(media_url)
        assert (got.key, got.path, got.per_url) == (want.key, want.path, want.per_url)
        store, expected = got.build(), want.build()
        assert (store.url, store.client_options) == (expected.url, expected.client_options)
        assert "s3cr" not in store.url and "s3cr" not in repr(store)


@pytest.mark.parametrize(
    ("url", "base", "path"),
    [
        ("http://[::1]:8080/a.jpg", "http://[::1]:8080", "a.jpg"),
        ("https://[2001:db8::7]/v/b.mp4", "https://[2001:db8::7]", "v/b.mp4"),
        ("http://user:pw@[fd00::1]:81/c.png", "http://[fd00::1]:81", "c.png"),
    ],
)
def test_http_ipv6_hosts_keep_their_brackets(url: str, base: str, path: str) -> None:
    context = StoreContext(Settings(), instance_credentials=False)
    for plan in (http_plan(parse_url(url), context), HttpPlanner(context).plan(parse_url(url))):
        assert (plan.path, plan.per_url) == (path, False)
        store = plan.build()  # obstore refused the bare address ("empty host")
        assert store.url.rstrip("/") == base and "pw" not in repr(store)


def test_http_status_mapping(http_server: FaultServer, clean_env: Path) -> None:
    http_server.put("f/file.bin", b"x")
    stores = make_stores(clean_env)
    expected = {
        404: (MediaNotFound, False),
        403: (MediaAccessDenied, False),
        401: (MediaAccessDenied, False),
        400: (MediaFetchError, False),
        500: (MediaFetchError, True),
        503: (MediaFetchError, True),
        429: (MediaFetchError, True),
    }
    for status, (kind, retryable) in expected.items():
        http_server.set_fault("f/file.bin", status=status, times=1)
        error = raised(stores.head, parse_url(http_server.url("f/file.bin")))
        assert type(error) is kind, (status, error)
        assert (error.status, error.is_retryable) == (status, retryable)
    # obstore does not retry by itself: one request per failure (retries belong to io/fetch.py).
    assert http_server.count("f/file.bin", "HEAD") == len(expected)


def test_http_reset_short_body_and_refused_are_retryable(http_server: FaultServer, clean_env: Path) -> None:
    http_server.put("r/big.bin", b"z" * 200_000)
    stores = make_stores(clean_env)
    for fault in ({"reset_after": 1000}, {"short_body": 1000}):
        http_server.set_fault("r/big.bin", times=1, **fault)
        error = translate_error(raised(read, stores, http_server.url("r/big.bin")), http_server.url("r/big.bin"))
        assert type(error) is MediaFetchError and error.is_retryable, (fault, error)
    refused = "http://127.0.0.1:9/x.jpg"  # the discard port: nothing listens there
    error = translate_error(raised(read, stores, refused), refused)
    assert type(error) is MediaFetchError and error.is_retryable and error.status is None


def test_http_timeout(http_server: FaultServer, clean_env: Path) -> None:
    http_server.put("slow/a.bin", b"late")
    stores = ObjectStores(Settings(home=clean_env, request_timeout=0.3, connect_timeout=1.0))
    store, _ = stores.resolve(parse_url(http_server.url("slow/a.bin")))
    assert store.client_options["read_timeout"] == "300ms" and store.client_options["connect_timeout"] == "1s"
    assert store.retry_config["max_retries"] == 0
    http_server.set_fault("slow/a.bin", latency=1.0, times=1)
    error = raised(stores.head, parse_url(http_server.url("slow/a.bin")))
    assert isinstance(error, MediaFetchTimeout) and isinstance(error, TimeoutError) and error.is_retryable


class _EchoAuth(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the Authorization header it received (the shared server does not record headers)."""

    def do_GET(self) -> None:
        body = (self.headers.get("Authorization") or "none").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_auth_server() -> Iterator[str]:
    with local_server(_EchoAuth) as address:
        yield address


def test_http_userinfo_becomes_basic_auth(echo_auth_server: str, clean_env: Path) -> None:
    stores = make_stores(clean_env)
    url = f"http://alice:s3cr%40t-pw@{echo_auth_server}/private/a.jpg"
    assert read(stores, url) == b"Basic YWxpY2U6czNjckB0LXB3"  # alice:s3cr@t-pw
    assert read(stores, f"http://{echo_auth_server}/private/a.jpg") == b"none"
    store, _ = stores.resolve(parse_url(url))
    assert "s3cr" not in repr(store) and "s3cr" not in repr(stores)


class _ErrorBody(http.server.BaseHTTPRequestHandler):
    """Answers 403 with a body that echoes secrets, as misconfigured gateways and some servers do."""

    bodies = {
        "/json": b'{"error": {"code": 403, "message": "key AKIAIOSFODNN7EXAMPLE with signature '
        + b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 and token=tok-secret-123"
        + b' denied for admin password=hunter2"}}',
        "/html": b"<html><head><style>p{}</style></head><body><h1>403 Forbidden</h1><p>Request "
        + b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl was rejected</p>"
        + b"<p>"
        + b"filler " * 200
        + b"</p></body></html>",
        "/text": b"denied\r\nX-Amz-Credential: AKIAIOSFODNN7EXAMPLE/20261201/us-east-1/s3\x1b[31m",
    }

    def do_GET(self) -> None:
        body = self.bodies.get(self.path.partition("?")[0], b"")
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_error_bodies_are_a_bounded_scrubbed_excerpt(clean_env: Path) -> None:
    stores = make_stores(clean_env)
    messages = {}
    with local_server(_ErrorBody) as address:
        for path in _ErrorBody.bodies:
            url = f"http://{address}{path}"
            error = stores.translate_error(raised(read, stores, url), url)
            assert isinstance(error, MediaAccessDenied) and error.status == 403
            messages[path] = printed(error)
            assert str(error).startswith(f"access denied: {url} (HTTP 403 Forbidden - ")
            assert len(str(error)) < len(url) + 260  # the status line and a bounded excerpt
    assert "denied for admin" in messages["/json"] and "403 Forbidden" in messages["/html"]
    everything = "\n".join(messages.values())
    for secret in ("AKIAIOSFODNN7EXAMPLE", "9f86d081884c7d659a2f", "tok-secret-123", "hunter2", "eyJhbGci", "\x1b"):
        assert secret not in everything, secret
