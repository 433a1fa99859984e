"""Self-checks of the fault-injecting HTTP test server (tests/servers/http.py), with a stdlib client."""

from __future__ import annotations

import http.client
import socket
import time
from urllib.parse import urlsplit

import pytest

from servers.http import FaultServer


def _request(
    server: FaultServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = urlsplit(server.base_url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def test_serves_files_with_validators_and_counts(http_server: FaultServer) -> None:
    url = http_server.put("self/a.bin", b"0123456789")
    assert url == f"{http_server.base_url}/self/a.bin"
    status, headers, body = _request(http_server, "GET", "/self/a.bin?X-Amz-Signature=secret")
    assert (status, body) == (200, b"0123456789")
    assert headers["etag"].startswith('"') and "last-modified" in headers
    status, _, body = _request(http_server, "HEAD", "/self/a.bin")
    assert (status, body) == (200, b"")
    assert http_server.count("self/a.bin") == 1
    assert http_server.count("self/a.bin", "HEAD") == 1
    assert http_server.count("self/a.bin", None) == 2
    assert http_server.requests("self/a.bin")[0].query == "X-Amz-Signature=secret"


def test_range_and_conditional_requests(http_server: FaultServer) -> None:
    http_server.put("self/r.bin", b"0123456789")
    status, headers, body = _request(http_server, "GET", "/self/r.bin", {"Range": "bytes=2-4"})
    assert (status, body, headers["content-range"]) == (206, b"234", "bytes 2-4/10")
    assert _request(http_server, "GET", "/self/r.bin", {"Range": "bytes=-3"})[2] == b"789"
    assert _request(http_server, "GET", "/self/r.bin", {"Range": "bytes=7-"})[2] == b"789"
    assert _request(http_server, "GET", "/self/r.bin", {"Range": "bytes=20-"})[0] == 416
    etag = _request(http_server, "HEAD", "/self/r.bin")[1]["etag"]
    assert _request(http_server, "GET", "/self/r.bin", {"If-None-Match": etag})[0] == 304
    http_server.put("self/r.bin", b"changed")
    assert _request(http_server, "GET", "/self/r.bin", {"If-None-Match": etag})[0] == 200


def test_faults_fail_n_times_then_succeed(http_server: FaultServer) -> None:
    http_server.put("self/f.bin", b"ok")
    http_server.set_fault("self/f.bin", status=500, times=2)
    assert [_request(http_server, "GET", "/self/f.bin")[0] for _ in range(3)] == [500, 500, 200]
    http_server.set_fault("self/f.bin", status=429, retry_after=3, times=1)
    status, headers, _ = _request(http_server, "GET", "/self/f.bin")
    assert (status, headers["retry-after"]) == (429, "3")
    http_server.set_fault(None, status=404)  # global fault applies to every path
    assert _request(http_server, "GET", "/self/f.bin")[0] == 404
    http_server.reset()
    assert _request(http_server, "GET", "/self/f.bin")[0] == 200
    assert http_server.count("self/f.bin") == 1  # reset zeroed the counters


def test_redirects(http_server: FaultServer) -> None:
    http_server.put("self/target.bin", b"target")
    http_server.set_fault("self/old.bin", redirect="self/target.bin", redirect_status=301)
    status, headers, _ = _request(http_server, "GET", "/self/old.bin")
    assert (status, headers["location"]) == (301, "/self/target.bin")


def test_latency_is_applied(http_server: FaultServer) -> None:
    http_server.put("self/slow.bin", b"x")
    http_server.set_fault("self/slow.bin", latency=0.2)
    _request(http_server, "GET", "/self/slow.bin")
    record = http_server.requests("self/slow.bin")[0]
    assert time.monotonic() - record.at >= 0.2


@pytest.mark.parametrize("fault", [{"short_body": 1000}, {"reset_after": 1000}])
def test_truncated_bodies(http_server: FaultServer, fault: dict[str, int]) -> None:
    http_server.put("self/big.bin", b"b" * 100_000)
    http_server.set_fault("self/big.bin", **fault)
    host, port = urlsplit(http_server.base_url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/self/big.bin")
        response = conn.getresponse()
        assert response.getheader("Content-Length") == "100000"
        with pytest.raises((http.client.IncompleteRead, ConnectionError, socket.error)):
            response.read()
    finally:
        conn.close()


def test_plain_class_start_stop(tmp_path) -> None:
    server = FaultServer().start()
    root = server.root
    server.put("x.bin", b"abc")
    assert _request(server, "GET", "/x.bin")[2] == b"abc"
    server.stop()
    assert not root.exists()
    with FaultServer(tmp_path) as own:  # a caller-provided folder is served and kept
        (tmp_path / "y.bin").write_bytes(b"yy")
        assert _request(own, "GET", "/y.bin")[2] == b"yy"
    assert (tmp_path / "y.bin").exists()
