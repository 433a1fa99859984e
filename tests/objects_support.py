"""Helpers shared by the object-store tests (test_objects*.py): stores, raised errors, small servers."""

from __future__ import annotations

import contextlib
import http.server
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import obstore
import obstore.exceptions
import pytest

from mediatable.config import Settings
from mediatable.io.objects import ObjectStores
from mediatable.io.urls import parse_url
from servers.cloud import S3Server


def read(stores: ObjectStores, url: str) -> bytes:
    """GET through the store `resolve` picks, as io/fetch.py does."""
    store, path = stores.resolve(parse_url(url))
    return bytes(obstore.get(store, path).bytes())


def make_stores(home: Path, buckets: dict[str, dict[str, Any]] | None = None) -> ObjectStores:
    """Stores with per-bucket settings (`{"s3://name": {...}}`), never asking a cloud metadata service."""
    return ObjectStores(Settings(home=home, buckets=buckets or {}), instance_credentials=False)


def raised(call: Any, *args: Any) -> BaseException:
    """Run `call(*args)` and return what it raised (fails the test if nothing was raised)."""
    try:
        call(*args)
    except BaseException as exc:
        return exc
    pytest.fail(f"{call} did not raise")


def printed(error: BaseException) -> str:
    """Everything a user could see of an error: str, repr and the full chained traceback."""
    try:
        raise error
    except BaseException as exc:
        shown = "".join(traceback.format_exception(exc))
    return f"{error}\n{error!r}\n{shown}\n{getattr(error, 'url', '')}"


def set_aws_env(monkeypatch: pytest.MonkeyPatch, s3: S3Server) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
    monkeypatch.setenv("AWS_REGION", s3.region)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")


@contextlib.contextmanager
def local_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A small HTTP server with `handler` on 127.0.0.1 for one test: yields `host:port`, stopped after."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
