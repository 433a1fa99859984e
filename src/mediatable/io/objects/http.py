"""HTTP(S) stores: one per origin when obstore can reproduce the path, else one per exact URL.

No credentials beyond the URL's own: `user:password@` becomes a Basic `Authorization` header (and
is kept out of the store's URL, so out of its repr and messages). A query string (signed URLs, SAS
URLs) must reach the server byte for byte, which obstore only guarantees when it is part of the
store's own URL.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from obstore.store import HTTPStore

from mediatable.io.objects.options import NO_RETRIES, StoreContext, freeze
from mediatable.io.urls import MediaUrl

__all__ = ["HttpPlan", "http_plan"]

# Characters the `url` crate (inside obstore) leaves as they are in a path segment. A key that
# re-encodes identically under this set reaches the server byte for byte via a per-origin store.
_URL_CRATE_SAFE = "!$&'()*+,:;=@[]^|"


class HttpPlan:
    """A store for an HTTP(S) URL: cache key, builder, path within the store, and whether it is per URL.

    Attributes:
        key: the cache key.
        path: the object's path within the store (`""` for a per-URL store).
        per_url: True when the store serves this exact URL only (kept in a bounded cache).
    """

    def __init__(self, key: tuple[Any, ...], base: str, client: dict[str, Any], path: str, per_url: bool) -> None:
        self.key, self.path, self.per_url = key, path, per_url
        self._base, self._client = base, client

    def build(self) -> HTTPStore:
        return HTTPStore(self._base, client_options=self._client, retry_config=NO_RETRIES)


def http_plan(url: MediaUrl, context: StoreContext) -> HttpPlan:
    """How to reach `url` (an http or https URL)."""
    parts = urlsplit(url.url)
    scheme = parts.scheme
    host = parts.hostname or ""
    origin = f"{scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    client = context.client(context.bucket_options(origin).client, allow_http=scheme == "http")
    auth = _basic_auth(parts.username, parts.password)
    if auth:
        # obstore ignores userinfo in URLs; send it the way browsers do.
        client["default_headers"] = {**client.get("default_headers", {}), "Authorization": auth}
    frozen_client = freeze(client)
    path = parts.path.lstrip("/")
    if not parts.query and _origin_path(path):
        # One store per origin: requests to the same host share the connection pool
        # (0.6 ms/GET against 4.1 ms with a new store, i.e. a new connection, per URL).
        return HttpPlan(("http", origin, frozen_client), origin, client, unquote(path), per_url=False)
    exact = urlunsplit((scheme, parts.netloc.rpartition("@")[2], parts.path or "/", parts.query, ""))
    return HttpPlan(("http-url", exact, frozen_client), exact, client, "", per_url=True)


def _origin_path(path: str) -> bool:
    """Whether obstore, given the decoded `path`, requests exactly this (already normalized) path."""
    if not path:
        return True
    for segment in path.split("/"):
        decoded = unquote(segment)
        if (
            not segment
            or decoded in (".", "..")
            or "/" in decoded
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded)
            or quote(decoded, safe=_URL_CRATE_SAFE) != segment
        ):
            return False
    return True


def _basic_auth(username: str | None, password: str | None) -> str | None:
    if not username and not password:
        return None
    pair = f"{unquote(username or '')}:{unquote(password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()
