"""A loopback server speaking the parts of the OpenAI API mediatable uses: chat completions and embeddings.

Used by the tests as the session fixture ``openai_server`` (reset before each test that uses it)::

    server.base_url                       # http://127.0.0.1:PORT/v1
    server.api_key                        # the only key it accepts (Authorization: Bearer ...)
    server.fail(status=429, times=1, retry_after=1)   # the next request gets a 429 with Retry-After
    server.fail(status=500, match="poison")           # every request whose body contains "poison": 500
    server.calls("chat/completions"), server.peak, server.records

What it answers, deterministically, so tests can check what arrived:

- chat: ``"<model>: <last user text>"``, plus ``" | system: <text>"`` when a system message came, and
  for an image part ``" | image WxH mean R,G,B"`` (base64 data URL, decoded with Pillow) or
  ``" | url <url>"`` (a URL it was asked to fetch; it does not fetch it);
- embeddings: per input text, :func:`fake_embedding` (``dimensions`` long, default 8);
- a wrong or missing key: 401 whose message repeats the key it received, as real servers partly do,
  so tests can check that mediatable scrubs keys from errors.

It records every request (arrival time, endpoint, whether the key was right, the JSON body, the
status sent) and the peak number of requests being handled at once; ``latency`` delays each answer
that is not a fault (faults answer at once).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import PIL.Image
import pytest


def fake_embedding(text: str, dimensions: int = 8) -> list[float]:
    """The unit vector the server returns for `text` (seeded by its SHA-256)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    vector = np.random.default_rng(seed).standard_normal(dimensions)
    return [float(v) for v in vector / np.linalg.norm(vector)]


@dataclasses.dataclass
class Fault:
    status: int
    times: int | None = 1
    retry_after: float | None = None
    match: str | None = None


@dataclasses.dataclass
class Record:
    at: float
    endpoint: str
    auth_ok: bool
    body: dict[str, Any]
    status: int = 200


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        endpoint = self.path.split("?")[0].removeprefix("/v1/")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        given = self.headers.get("Authorization", "").removeprefix("Bearer ")
        record = Record(time.monotonic(), endpoint, given == owner.api_key, body)
        with owner.lock:
            owner.records.append(record)
            owner.active += 1
            owner.peak = max(owner.peak, owner.active)
        try:
            fault = owner.take_fault(raw.decode("utf-8", "replace"))
            if fault is None:
                time.sleep(owner.latency)  # faults answer at once
            if not record.auth_ok:
                record.status = 401
                message = f"Incorrect API key provided: {given}."
                self._send(401, {"error": {"message": message, "type": "invalid_request_error"}})
            elif fault is not None:
                record.status = fault.status
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                self._send(fault.status, {"error": {"message": f"injected {fault.status}"}}, headers)
            elif endpoint == "chat/completions":
                self._send(200, _chat(body))
            elif endpoint == "embeddings":
                self._send(200, _embeddings(body))
            else:
                record.status = 404
                self._send(404, {"error": {"message": f"no endpoint {endpoint}"}})
        finally:
            with owner.lock:
                owner.active -= 1

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _chat(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages", [])
    user = [m for m in messages if m.get("role") == "user"][-1]
    parts = user["content"] if isinstance(user["content"], list) else [{"type": "text", "text": user["content"]}]
    reply = f"{body.get('model')}: " + " ".join(p["text"] for p in parts if p.get("type") == "text")
    system = [m["content"] for m in messages if m.get("role") == "system"]
    if system:
        reply += f" | system: {system[0]}"
    for part in parts:
        if part.get("type") == "image_url":
            url = part["image_url"]["url"]
            if url.startswith("data:image/"):
                img = PIL.Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
                mean = np.asarray(img).reshape(-1, 3).mean(axis=0).round().astype(int)
                reply += f" | image {img.width}x{img.height} mean {mean[0]},{mean[1]},{mean[2]}"
            else:
                reply += f" | url {url}"
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dimensions = int(body.get("dimensions") or 8)
    data = [
        {"object": "embedding", "index": i, "embedding": fake_embedding(t, dimensions)} for i, t in enumerate(texts)
    ]
    return {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default of 5 drops connections under concurrent load
    owner: OpenAIServer


class OpenAIServer:
    """The fake OpenAI API on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self.api_key = "sk-test-" + secrets.token_hex(12)
        self.lock = threading.Lock()
        self.records: list[Record] = []
        self.faults: list[Fault] = []
        self.latency = 0.0
        self.active = 0
        self.peak = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> OpenAIServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="openai-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def reset(self) -> None:
        with self.lock:
            self.records.clear()
            self.faults.clear()
            self.latency = 0.0
            self.peak = 0

    def fail(
        self, status: int, times: int | None = 1, retry_after: float | None = None, match: str | None = None
    ) -> None:
        """Answer the next `times` requests (None: all) whose body contains `match` (None: any) with `status`."""
        with self.lock:
            self.faults.append(Fault(status, times, retry_after, match))

    def take_fault(self, body: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.match is None or fault.match in body:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def calls(self, endpoint: str | None = None) -> int:
        """Requests received (for one endpoint, e.g. `"embeddings"`), whatever was answered."""
        with self.lock:
            return sum(1 for r in self.records if endpoint is None or r.endpoint == endpoint)


@pytest.fixture(scope="session")
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _reset_openai_server(request: pytest.FixtureRequest) -> None:
    if "openai_server" in request.fixturenames:
        request.getfixturevalue("openai_server").reset()
