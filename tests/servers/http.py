"""A real HTTP server on 127.0.0.1 that serves files and injects faults on demand.

Used by the tests as the session fixture ``http_server`` and by the benchmarks as a plain class::

    with FaultServer() as server:
        url = server.put("a/b.jpg", data)
        server.set_fault("a/b.jpg", status=500, times=2)   # two 500s, then the file
        ...
        server.count("a/b.jpg")                              # GET requests seen for that path

What it does, beyond serving files from a temporary folder it owns:

- ``Range`` (single range), ``ETag``, ``Last-Modified``, ``If-None-Match`` / ``If-Modified-Since`` (304),
  ``If-Match`` (412 when the file's ETag differs);
- HTTP/1.1 keep-alive, a listen backlog of 128 (the stdlib default of 5 drops SYNs under load);
- query strings are accepted and ignored for routing and counting (presigned-URL look-alikes);
- a request counter per (method, path), a log of requests with their arrival times, and the peak
  number of requests handled at once;
- faults per path or global (:class:`Fault`): latency, a fixed status (404, 403, 500, ...), N failures then
  success (``times=N``), 429 with ``Retry-After``, a slow body, a connection reset mid-body, a body
  shorter than its ``Content-Length``, 301/302 redirects, ``Range`` ignored (the whole file, 200);
- a bandwidth cap shared by all responses (:meth:`FaultServer.set_bandwidth`) and a count of body bytes
  sent per path (:meth:`FaultServer.sent`).

A per-path fault replaces the global one for its path. Faults with ``times=N`` apply to the first N
matching requests after they were set, then vanish (the global fault, if any, applies again); HEAD
requests count unless ``methods`` says otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import hashlib
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

_CHUNK = 64 * 1024


@dataclasses.dataclass
class Fault:
    """What to do wrong when a request for a path arrives.

    Attributes:
        latency: seconds to wait before answering.
        status: answer with this status and a short body instead of the file (e.g. 404, 403, 500, 429).
        retry_after: value of the ``Retry-After`` header sent with ``status`` (seconds).
        slow_body: seconds to sleep after each 16 KiB of body.
        reset_after: send the headers and this many body bytes, then reset the connection (TCP RST).
        short_body: send the headers (full ``Content-Length``) and this many body bytes, then close.
        redirect: answer with a redirect to this path (or absolute URL).
        redirect_status: 301 or 302 (or 307/308).
        ignore_range: answer a ``Range`` request with the whole file (200), as some servers do.
        times: apply the fault to this many requests, then remove it; None = until cleared.
        methods: HTTP methods the fault applies to.
    """

    latency: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    slow_body: float = 0.0
    reset_after: int | None = None
    short_body: int | None = None
    redirect: str | None = None
    redirect_status: int = 302
    ignore_range: bool = False
    times: int | None = None
    methods: tuple[str, ...] = ("GET", "HEAD")


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One request the server saw: method, path (no query), query string, Range header, arrival time."""

    method: str
    path: str
    query: str
    range: str | None
    at: float


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections like against real servers
    disable_nagle_algorithm = True  # else headers and body in separate writes cost a 40 ms delayed ACK
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests read counters, not logs

    def do_GET(self) -> None:
        with self.server.owner._active():
            self._serve(head=False)

    def do_HEAD(self) -> None:
        with self.server.owner._active():
            self._serve(head=True)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        path = unquote(parts.path).lstrip("/")
        fault = owner._arrive(RequestRecord(self.command, path, parts.query, self.headers.get("Range"), 0.0))
        if fault.latency:
            time.sleep(fault.latency)
        active = owner._consume(path, self.command)

        if active is not None and active.redirect is not None:
            target = active.redirect if "://" in active.redirect else "/" + active.redirect.lstrip("/")
            self._simple(active.redirect_status, b"moved\n", head, {"Location": target})
            return
        if active is not None and active.status is not None:
            extra = {}
            if active.retry_after is not None:
                value = active.retry_after
                extra["Retry-After"] = str(int(value)) if float(value).is_integer() else str(value)
            self._simple(active.status, f"fault {active.status}\n".encode(), head, extra)
            return

        file = owner.root / path
        if not path or not file.is_file():
            self._simple(404, b"not found\n", head)
            return
        stat = file.stat()
        etag = owner._etag(path, stat)
        last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        validators = {"ETag": etag, "Last-Modified": last_modified, "Accept-Ranges": "bytes"}
        if self._not_modified(etag, stat.st_mtime):
            self._simple(304, b"", True, validators)
            return
        if_match = self.headers.get("If-Match")
        if if_match is not None and if_match.strip() != "*" and etag not in [t.strip() for t in if_match.split(",")]:
            self._simple(412, b"precondition failed\n", head, validators)
            return

        size = stat.st_size
        start, end = 0, size  # end exclusive
        status = 200
        wanted = None if active is not None and active.ignore_range else _parse_range(self.headers.get("Range"), size)
        if wanted == "invalid":
            self._simple(416, b"range not satisfiable\n", head, {"Content-Range": f"bytes */{size}"})
            return
        if wanted is not None:
            start, end = wanted
            status = 206
            validators["Content-Range"] = f"bytes {start}-{end - 1}/{size}"

        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        for name, value in validators.items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return
        self._send_body(path, file, start, end, active)

    def _send_body(self, path: str, file: Path, start: int, end: int, active: Fault | None) -> None:
        limit = end - start
        cut = None
        if active is not None:
            if active.reset_after is not None:
                cut = min(active.reset_after, limit)
            elif active.short_body is not None:
                cut = min(active.short_body, limit)
        to_send = limit if cut is None else cut
        step = 16 * 1024 if active is not None and active.slow_body else _CHUNK
        generation = self.server.owner.generation
        with open(file, "rb") as fh:
            fh.seek(start)
            while to_send > 0:
                chunk = fh.read(min(step, to_send))
                if not chunk:
                    break
                self.server.owner._throttle(len(chunk))
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                    return
                self.server.owner._count_sent(path, len(chunk), generation)
                to_send -= len(chunk)
                if active is not None and active.slow_body:
                    time.sleep(active.slow_body)
        if cut is None:
            return
        self.close_connection = True
        if active is not None and active.reset_after is not None:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)

    def _not_modified(self, etag: str, mtime: float) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return etag in [tag.strip() for tag in if_none_match.split(",")] or if_none_match.strip() == "*"
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                parsed = email.utils.parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return False
            return int(mtime) <= parsed
        return False

    def _simple(self, status: int, body: bytes, head: bool, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and status != 304:
            self.wfile.write(body)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end-exclusive) for a single `bytes=` range, None to send everything, "invalid" for 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if first == "":
            count = int(last)
            if count <= 0:
                return "invalid"
            return max(size - count, 0), size
        start = int(first)
        end = size if last == "" else min(int(last) + 1, size)
    except ValueError:
        return None
    if start >= size or end <= start:
        return "invalid"
    return start, end


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default of 5 drops SYNs (1 s stalls) under 15+ concurrent connects
    daemon_threads = True
    allow_reuse_address = True
    owner: FaultServer

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that give up (timeouts, cancelled downloads) close their end mid-answer: expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class FaultServer:
    """Threaded HTTP file server with injectable faults; start/stop it, or use it as a context manager.

    Lifecycle: ``FaultServer()`` creates its temporary folder; :meth:`start` binds a free port on
    127.0.0.1 and serves from a background thread; :meth:`stop` shuts the server down and deletes the
    folder. Everything else is safe to call from any thread while it runs.

    Examples:
        >>> with FaultServer() as server:
        ...     url = server.put("x.bin", b"abc")
        ...     server.set_fault("x.bin", status=500, times=1)
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="mt-http-")) if root is None else Path(root)
        self._lock = threading.Lock()
        self._faults: dict[str | None, Fault] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._etags: dict[str, str] = {}
        self._log: list[RequestRecord] = []
        # In-flight requests per reset generation: a request a previous test left hanging (a client
        # that timed out on a slow body) must not count toward this test's peak.
        self._generation = 0
        self._in_flight: dict[int, int] = {}
        self._peak = 0
        self._sent: dict[str, int] = {}
        self._bandwidth: float | None = None  # bytes per second, shared by all responses
        self._line_free_at = 0.0  # when the capped "line" can take the next chunk
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultServer:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket, delete the folder (if this server created it)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- files -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("the server is not running; call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        """The URL of ``path`` on this server."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def put(self, path: str, data: bytes) -> str:
        """Store ``data`` at ``path`` and return its URL; replacing a file gives it a new ETag."""
        path = path.lstrip("/")
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, file)
        with self._lock:
            version = hashlib.sha256(data).hexdigest()[:20]
            self._etags[path] = f'"{version}"'
        return self.url(path)

    def delete(self, path: str) -> None:
        """Remove ``path`` (later requests get 404)."""
        path = path.lstrip("/")
        (self.root / path).unlink(missing_ok=True)
        with self._lock:
            self._etags.pop(path, None)

    def _etag(self, path: str, stat: os.stat_result) -> str:
        with self._lock:
            known = self._etags.get(path)
        return known or f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'

    # -- faults ------------------------------------------------------------------------------

    def set_fault(self, path: str | None = None, **options: object) -> Fault:
        """Set the fault of ``path`` (of every path when None); keywords are :class:`Fault` fields.

        A per-path fault replaces the global one for that path. Returns the fault (its ``times``
        counts down as requests consume it).
        """
        fault = Fault(**options)  # type: ignore[arg-type]
        with self._lock:
            self._faults[None if path is None else path.lstrip("/")] = fault
        return fault

    def clear_fault(self, path: str | None = None) -> None:
        """Remove the fault of ``path`` (or the global one)."""
        with self._lock:
            self._faults.pop(None if path is None else path.lstrip("/"), None)

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        """Cap the bytes per second of all response bodies together (None: no cap)."""
        with self._lock:
            self._bandwidth = bytes_per_second
            self._line_free_at = 0.0

    def _throttle(self, nbytes: int) -> None:
        with self._lock:
            rate = self._bandwidth
            if not rate:
                return
            now = time.monotonic()
            start = max(now, self._line_free_at)
            self._line_free_at = start + nbytes / rate
            wait = self._line_free_at - now
        time.sleep(wait)

    @property
    def generation(self) -> int:
        """Bumped by every :meth:`reset`."""
        with self._lock:
            return self._generation

    def _count_sent(self, path: str, nbytes: int, generation: int) -> None:
        # Bytes of a response that began before the last reset are not this test's: the client may have
        # read them all while this thread had yet to count them (seen under load).
        with self._lock:
            if generation == self._generation:
                self._sent[path] = self._sent.get(path, 0) + nbytes

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        with self._lock:
            generation = self._generation
            self._in_flight[generation] = self._in_flight.get(generation, 0) + 1
            self._peak = max(self._peak, self._in_flight[generation])
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[generation] -= 1

    def _arrive(self, record: RequestRecord) -> Fault:
        record = dataclasses.replace(record, at=time.monotonic())
        with self._lock:
            key = (record.method, record.path)
            self._counts[key] = self._counts.get(key, 0) + 1
            self._log.append(record)
            return self._faults.get(record.path) or self._faults.get(None) or Fault()

    def _consume(self, path: str, method: str) -> Fault | None:
        """The fault to apply to this request, counting down ``times``; None when there is none."""
        with self._lock:
            key = path if path in self._faults else None
            fault = self._faults.get(key)
            if fault is None or method not in fault.methods:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[key]  # used up: the global fault (if any) applies again
            return fault

    # -- observation -------------------------------------------------------------------------

    def count(self, path: str | None = None, method: str | None = "GET") -> int:
        """Requests seen for ``path`` (all paths when None) with ``method`` (any method when None)."""
        stripped = None if path is None else path.lstrip("/")
        with self._lock:
            return sum(
                n
                for (m, p), n in self._counts.items()
                if (stripped is None or p == stripped) and (method is None or m == method)
            )

    def sent(self, path: str | None = None) -> int:
        """Body bytes sent for ``path`` (all paths when None) since the last :meth:`reset`."""
        stripped = None if path is None else path.lstrip("/")
        with self._lock:
            return sum(n for p, n in self._sent.items() if stripped is None or p == stripped)

    @property
    def peak_concurrency(self) -> int:
        """The most requests handled at the same time since the last :meth:`reset`."""
        with self._lock:
            return self._peak

    def requests(self, path: str | None = None) -> list[RequestRecord]:
        """The requests seen (for ``path``, or all), oldest first."""
        stripped = None if path is None else path.lstrip("/")
        with self._lock:
            return [r for r in self._log if stripped is None or r.path == stripped]

    def reset(self, files: bool = False) -> None:
        """Forget faults, counters and the request log; with ``files=True`` also delete every file."""
        with self._lock:
            self._faults.clear()
            self._counts.clear()
            self._log.clear()
            self._sent.clear()
            self._bandwidth = None
            self._generation += 1
            self._peak = 0
            if files:
                self._etags.clear()
        if files:
            for child in self.root.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def http_server() -> Iterator[FaultServer]:
    """One fault-injecting HTTP server for the session; faults and counters are reset before each test."""
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _reset_http_server(request: pytest.FixtureRequest) -> None:
    """Give each test that uses ``http_server`` a server without faults and with zeroed counters."""
    if "http_server" in request.fixturenames:
        request.getfixturevalue("http_server").reset()
