"""The demo's local servers on 127.0.0.1: a web server for images and an S3-compatible server for videos.

Both run in this process (threads) and stop when their `with` block ends, so the demo leaves
nothing running. The web server prefers a fixed port: media URLs then stay the same from one
run to the next, and a second run is served by the file cache.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mediatable.errors import ConfigError

__all__ = ["HTTP_PORT", "S3_ACCESS_KEY", "S3_REGION", "S3_SECRET_KEY", "http_server", "s3_server", "scoped_env"]

HTTP_PORT = 8642  # preferred: the same image URLs on every run
S3_ACCESS_KEY = "mediatable-demo"
S3_SECRET_KEY = "mediatable-demo-secret"
S3_REGION = "us-east-1"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the demo's output stays readable
        pass


@contextlib.contextmanager
def http_server(folder: Path, port: int = HTTP_PORT) -> Iterator[str]:
    """Serve `folder` at `http://127.0.0.1:<port>` (any free port if `port` is taken); yields that base URL.

    Examples:
        >>> import tempfile, urllib.request
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.txt").write_text("hi")
        >>> with http_server(folder, port=0) as base:
        ...     urllib.request.urlopen(f"{base}/a.txt").read()
        b'hi'
    """
    handler = functools.partial(_QuietHandler, directory=str(folder))
    ThreadingHTTPServer.request_queue_size = 128  # the default backlog of 5 drops connections under load
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:  # taken: any free port (the next run then cannot reuse this run's cache entries)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="demo-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def s3_server(bucket: str, objects: Mapping[str, Path]) -> Iterator[str]:
    """An S3-compatible server (moto) holding `bucket` with `objects` (key -> local file); yields its endpoint.

    Raises:
        ConfigError: moto is not installed (`pip install 'mediatable[demo]'`).
    """
    try:
        # Deferred on purpose: moto is an optional dependency that only the demo needs.
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise ConfigError(f"the demo needs moto: pip install 'mediatable[demo]' ({exc})") from exc
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    request_log = logging.getLogger("werkzeug")  # moto's web server logs every request
    level = request_log.level
    request_log.setLevel(logging.WARNING)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto takes unsigned requests: seeding needs no SDK (and no look at the user's AWS settings)
        _put(f"{endpoint}/{bucket}", b"")
        for key, path in objects.items():
            _put(f"{endpoint}/{bucket}/{key}", path.read_bytes(), "video/mp4")
        yield endpoint
    finally:
        server.stop()
        request_log.setLevel(level)


def _put(url: str, body: bytes, content_type: str = "application/octet-stream") -> None:
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


@contextlib.contextmanager
def scoped_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
