""":class:`ObjectStores`: one obstore store per bucket and credentials, built once and shared by threads."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import mimetypes
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import obstore
from obstore.store import HTTPStore, LocalStore, ObjectStore

from mediatable.config import Settings
from mediatable.errors import Error, MediaAccessDenied, MediaConfigError, MediaError
from mediatable.io.objects import gcs
from mediatable.io.objects.aws import AwsProfiles, s3_plan
from mediatable.io.objects.azure import azure_plan
from mediatable.io.objects.errors import translate_error
from mediatable.io.objects.gcs import gcs_plan
from mediatable.io.objects.http import HttpPlanner
from mediatable.io.objects.options import NO_RETRIES, StoreContext, StorePlan, build_store
from mediatable.io.objects.streams import PART_CONCURRENCY, PART_SIZE, StreamedUpload
from mediatable.io.urls import MediaUrl, is_url_like, parse_url, redact_url

__all__ = ["Credentials", "ObjectInfo", "ObjectStores"]

# Stores for URLs that need one store each (query strings, odd paths): kept for reuse, but bounded.
MAX_URL_STORES = 256


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD request tells about an object.

    Attributes:
        size: length in bytes.
        etag: the entity tag as the server sent it (quotes included), or None.
        last_modified: modification time (UTC), or None when the server gave none.
        version: the store's version id (S3 version, GCS generation), or None.

    Examples:
        >>> ObjectInfo(size=3, etag='"abc"', last_modified=None).size
        3
    """

    size: int
    etag: str | None
    last_modified: datetime.datetime | None
    version: str | None = None


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Which credentials requests for a URL carry.

    Attributes:
        signed: whether requests are signed at all.
        source: where the credentials came from (e.g. `AWS profile 'dev'`), or why there are none;
            names of settings and files only, never values.

    Examples:
        >>> Credentials(False, "no AWS credentials found").signed
        False
    """

    signed: bool
    source: str


class ObjectStores:
    """Builds, caches and hands out obstore stores for media URLs.

    Lifecycle: one instance per session (built from its :class:`Settings`); it holds no open files
    and needs no closing. Stores are created on first use and kept, keyed by kind, bucket, endpoint
    and the credentials in effect at that moment (a changed environment gets a new store); per-URL
    HTTP stores are kept in a bounded LRU. Every method is safe to call from many threads at once.

    Args:
        settings: timeouts and per-bucket overrides come from here.
        instance_credentials: whether to let obstore ask a cloud metadata service (EC2 role, GCE
            service account, Azure managed identity) when no other credentials exist. None: only on a
            machine that identifies itself as such a VM (read from `/sys/class/dmi`, no network
            probe); elsewhere such requests go unsigned instead of waiting on 169.254.169.254.
        max_url_stores: how many per-URL HTTP stores to keep.

    Examples:
        >>> from mediatable.config import Settings
        >>> from mediatable.io.urls import parse_url
        >>> stores = ObjectStores(Settings(), instance_credentials=False)
        >>> store, path = stores.resolve(parse_url("s3://open-data/images/cat.jpg"))
        >>> path
        'images/cat.jpg'
        >>> stores.resolve(parse_url("s3://open-data/x.jpg"))[0] is store
        True
    """

    def __init__(
        self, settings: Settings, *, instance_credentials: bool | None = None, max_url_stores: int = MAX_URL_STORES
    ) -> None:
        self._settings = settings
        self._context = StoreContext(settings, instance_credentials)
        self._http = HttpPlanner(self._context)
        self._profiles = AwsProfiles()
        self._max_url_stores = max_url_stores
        self._lock = threading.Lock()
        self._stores: dict[tuple[Any, ...], tuple[ObjectStore, Credentials]] = {}
        self._url_stores: collections.OrderedDict[tuple[Any, ...], ObjectStore] = collections.OrderedDict()
        self._local = LocalStore()

    # -- public API -------------------------------------------------------------------------------

    def resolve(self, url: MediaUrl) -> tuple[ObjectStore, str]:
        """The obstore store holding `url`, and the object's path within it.

        Args:
            url: a parsed media URL of any kind; `file` URLs map to one local-filesystem store.

        Returns:
            `(store, path)`, ready for `obstore.get(store, path)`, `obstore.head`, `obstore.sign`, ...

        Raises:
            MediaConfigError: the URL's bucket cannot be configured (unknown option, no Azure
                account, a malformed key): that URL's error, and also a ConfigError.

        Examples:
            >>> import obstore
            >>> from mediatable.config import Settings
            >>> from mediatable.io.urls import parse_url
            >>> stores = ObjectStores(Settings())
            >>> store, path = stores.resolve(parse_url("https://example.com/a/b.jpg"))
            >>> path
            'a/b.jpg'
        """
        store, path, _ = self._resolve(url)
        return store, path

    def credentials(self, url: MediaUrl) -> Credentials:
        """Whether requests for `url` are signed, and with credentials from where.

        Raises:
            MediaConfigError: as :meth:`resolve`.

        Examples:
            >>> from mediatable.config import Settings
            >>> from mediatable.io.urls import parse_url
            >>> stores = ObjectStores(Settings(buckets={"s3://open": {"anonymous": True}}))
            >>> stores.credentials(parse_url("s3://open/a.jpg")).source
            'anonymous = true in [buckets."s3://open"]'
        """
        return self._resolve(url)[2]

    def head(self, url: MediaUrl) -> ObjectInfo:
        """Size, ETag and modification time of the object at `url`, from one HEAD request.

        Args:
            url: the object (any kind, `file` included).

        Returns:
            The object's metadata.

        Raises:
            MediaNotFound: there is no such object.
            MediaAccessDenied: the credentials in use may not read it.
            MediaFetchTimeout, MediaFetchError: the request failed (see `.is_retryable`).

        Examples:
            >>> import tempfile
            >>> from mediatable.config import Settings
            >>> from mediatable.io.urls import parse_url
            >>> with tempfile.NamedTemporaryFile(suffix=".txt") as f:
            ...     _ = f.write(b"hello"); f.flush()
            ...     ObjectStores(Settings()).head(parse_url(f.name)).size
            5
        """
        store, path = self.resolve(url)
        try:
            meta = obstore.head(store, path)
        except Exception as exc:
            raise self.translate_error(exc, url.url) from exc
        return head_info(meta)

    async def head_async(self, url: MediaUrl) -> ObjectInfo:
        """:meth:`head` for event loops (obstore's async API).

        Examples:
            >>> info = await stores.head_async(parse_url("s3://bucket/a.jpg"))  # doctest: +SKIP
        """
        store, path = self.resolve(url)
        try:
            meta = await obstore.head_async(store, path)
        except Exception as exc:
            raise self.translate_error(exc, url.url) from exc
        return head_info(meta)

    def put_file(
        self, url: MediaUrl, local_path: str | os.PathLike[str], *, content_type: str | None = None
    ) -> ObjectInfo:
        """Upload a local file to `url` (multipart for large files), replacing what is there.

        Args:
            url: the destination object (S3, GCS, Azure or `file`; plain web servers are read-only).
            local_path: the file to upload.
            content_type: the object's `Content-Type`; default guessed from the key's extension.

        Returns:
            The new object's size, ETag and version (no modification time: the store does not say).

        Raises:
            FileNotFoundError: `local_path` does not exist (the built-in error: it is not a media URL).
            MediaAccessDenied: no permission to write, or an upload to GCS without credentials.
            MediaNotFound: the bucket does not exist.
            MediaFetchTimeout, MediaFetchError: the transfer failed (see `.is_retryable`).

        Examples:
            >>> import tempfile
            >>> from pathlib import Path
            >>> from mediatable.config import Settings
            >>> from mediatable.io.urls import parse_url
            >>> folder = Path(tempfile.mkdtemp())
            >>> _ = (folder / "a.txt").write_bytes(b"abc")
            >>> ObjectStores(Settings()).put_file(parse_url(str(folder / "copy" / "b.txt")), folder / "a.txt").size
            3
        """
        source = Path(local_path)
        size = source.stat().st_size  # raises the plain FileNotFoundError for a missing source
        store, path, options = self._upload(url, content_type)
        try:
            result = obstore.put(store, path, source, **options)
        except Exception as exc:
            raise self.translate_error(exc, url.url) from exc
        return ObjectInfo(size=size, etag=result.get("e_tag"), last_modified=None, version=result.get("version"))

    async def put_file_async(
        self, url: MediaUrl, local_path: str | os.PathLike[str], *, content_type: str | None = None
    ) -> ObjectInfo:
        """:meth:`put_file` for event loops (obstore's async API): one attempt, no retries.

        Examples:
            >>> info = await stores.put_file_async(parse_url("s3://bucket/a.png"), "a.png")  # doctest: +SKIP
        """
        source = Path(local_path)
        size = source.stat().st_size
        store, path, options = self._upload(url, content_type)
        try:
            result = await obstore.put_async(store, path, source, **options)
        except Exception as exc:
            raise self.translate_error(exc, url.url) from exc
        return ObjectInfo(size=size, etag=result.get("e_tag"), last_modified=None, version=result.get("version"))

    def open_upload(self, url: MediaUrl, *, content_type: str | None = None) -> StreamedUpload | None:
        """A stream to the object `url` that uploads as it is written (see :mod:`~mediatable.io.objects.streams`).

        S3 and Azure only: GCS uploads go to a signed single PUT (see `_upload`), and local files
        are written in place; for those this returns None (stage a file, then :meth:`put_file`).

        Raises:
            MediaAccessDenied, MediaNotFound, MediaFetchError: the upload cannot start.

        Examples:
            >>> from mediatable.config import Settings
            >>> from mediatable.io.urls import parse_url
            >>> ObjectStores(Settings()).open_upload(parse_url("/tmp/out.parquet")) is None
            True
        """
        if url.kind not in ("s3", "azure"):
            return None
        store, path, options = self._upload(url, content_type)
        try:
            writer = obstore.open_writer(
                store, path, buffer_size=PART_SIZE, max_concurrency=PART_CONCURRENCY, **options
            )
        except Exception as exc:
            raise self.translate_error(exc, url.url) from exc
        return StreamedUpload(writer, url.url, self.translate_error)

    def delete(self, url: MediaUrl) -> None:
        """Delete the object at `url` (what the destination probe writes; nothing else deletes).

        Raises:
            MediaError: the request failed (a missing object is not an error on every store).
        """
        store, path = self.resolve(url)
        try:
            obstore.delete(store, path)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self.translate_error(exc, url.url) from exc

    def _upload(self, url: MediaUrl, content_type: str | None) -> tuple[ObjectStore, str, dict[str, Any]]:
        """Where an upload of `url` goes: (store, path, obstore put options).

        GCS uploads go to a signed PUT URL (signed locally with a service-account key, else by
        obstore): real GCS takes them like its XML API uploads, and so does fake-gcs-server, which
        answers plain XML API uploads with 400.
        """
        store, path, credentials = self._resolve(url)
        if url.kind == "gs" and not credentials.signed:
            # obstore fetches a token for GCS uploads even when told not to sign: fail here, not
            # after a wait on the metadata server.
            raise MediaAccessDenied(
                f"cannot upload to {redact_url(url.url)} anonymously: set GOOGLE_APPLICATION_CREDENTIALS",
                url=redact_url(url.url),
            )
        options: dict[str, Any] = {}
        kind = content_type or mimetypes.guess_type(url.key)[0]
        if url.kind in ("s3", "gs", "azure") and kind:
            options["attributes"] = {"Content-Type": kind}
        if url.kind != "gs":
            return store, path, options
        key = gcs.signing_key(store.config)
        lifetime = datetime.timedelta(minutes=15)
        if key is not None:
            headers = {"Content-Type": kind} if kind else {}
            now = datetime.datetime.now(datetime.UTC)
            base = gcs.base_url(store.config, key)
            target = gcs.signed_url(
                key, base, url.bucket, url.key, int(lifetime.total_seconds()), now, method="PUT", headers=headers
            )
        else:
            try:
                target = obstore.sign(store, "PUT", path, lifetime)
            except Exception as exc:
                raise self.translate_error(exc, url.url) from exc
        client = dict(store.client_options)
        http_store = HTTPStore(target, client_options=client, retry_config=NO_RETRIES)
        return http_store, "", {**options, "use_multipart": False}

    def translate_error(self, exc: BaseException, url: str) -> MediaError:
        """:func:`translate_error`; access denied to a request sent unsigned says that no credentials were found.

        A server's own words for an unsigned request are misleading (Azure speaks of a malformed
        Authorization header), so they give way to where credentials were looked for.

        Args:
            exc: what obstore (or the OS) raised.
            url: the media URL being read or written.

        Returns:
            The error to raise, e.g. `raise stores.translate_error(exc, url) from exc`.

        Examples:
            >>> from mediatable.config import Settings
            >>> stores = ObjectStores(Settings(buckets={"s3://private-bucket": {"anonymous": True}}))
            >>> print(stores.translate_error(PermissionError("denied"), "s3://private-bucket/k.jpg"))
            access denied: s3://private-bucket/k.jpg: the request was unsigned: anonymous = true in [buckets."s3://private-bucket"]
        """
        error = translate_error(exc, url)
        if not isinstance(error, MediaAccessDenied) or not is_url_like(url) or "request was unsigned" in str(error):
            return error
        try:
            media_url = parse_url(url)
            credentials = self.credentials(media_url) if media_url.kind in ("s3", "gs", "azure") else None
        except Error:
            return error
        if credentials is None or credentials.signed:
            return error
        status = f" (HTTP {error.status})" if error.status else ""
        message = f"access denied: {error.url}: the request was unsigned: {credentials.source}{status}"
        return MediaAccessDenied(message, url=error.url, status=error.status)

    def __repr__(self) -> str:
        # Only kinds and bucket names: the cache keys hold credentials.
        with self._lock:
            names = sorted({key[1] for key in self._stores})
            url_stores = len(self._url_stores)
        return f"ObjectStores(stores={names!r}, url_stores={url_stores})"

    # -- resolving and caching --------------------------------------------------------------------

    def _resolve(self, url: MediaUrl) -> tuple[ObjectStore, str, Credentials]:
        if url.kind == "file":
            return self._local, url.key.lstrip("/"), _LOCAL
        if url.kind == "http" or (url.url.startswith(("http://", "https://")) and urlsplit(url.url).query):
            # A query string (signed URL, SAS URL) must reach the server byte for byte.
            http = self._http.plan(url)
            if http.per_url:
                return self._cached_url(http.key, http.build, url), http.path, _UNSIGNED_HTTP
            return self._cached(http.key, http.build, _UNSIGNED_HTTP, url), http.path, _UNSIGNED_HTTP
        plan = self._plan(url)
        credentials = Credentials(plan.signed, plan.source)
        return self._cached(plan.key, plan.build, credentials, url), url.key, credentials

    def _plan(self, url: MediaUrl) -> StorePlan:
        if url.kind == "s3":
            return s3_plan(url, self._context, self._profiles)
        if url.kind == "gs":
            return gcs_plan(url, self._context)
        if url.kind == "azure":
            return azure_plan(url, self._context)
        safe = redact_url(url.url)
        raise MediaConfigError(f"no object store for URL kind {url.kind!r}: {safe}", url=safe)

    def _cached(
        self, key: tuple[Any, ...], build: Callable[[], ObjectStore], credentials: Credentials, url: MediaUrl
    ) -> ObjectStore:
        with self._lock:
            found = self._stores.get(key)
        if found is not None:
            return found[0]
        # Built outside the lock: a boto3 session takes ~100 ms and must not stall other buckets.
        # Two threads may build the same store at once; setdefault keeps exactly one.
        store = build_store(build, redact_url(url.url))
        with self._lock:
            return self._stores.setdefault(key, (store, credentials))[0]

    def _cached_url(self, key: tuple[Any, ...], build: Callable[[], ObjectStore], url: MediaUrl) -> ObjectStore:
        with self._lock:
            store = self._url_stores.get(key)
            if store is not None:
                self._url_stores.move_to_end(key)
                return store
        store = build_store(build, redact_url(url.url))
        with self._lock:
            store = self._url_stores.setdefault(key, store)
            self._url_stores.move_to_end(key)
            while len(self._url_stores) > self._max_url_stores:
                self._url_stores.popitem(last=False)
        return store


_LOCAL = Credentials(True, "the local file system")
_UNSIGNED_HTTP = Credentials(False, "plain HTTP(S): credentials only from user:password@ in the URL")


def head_info(meta: Mapping[str, Any]) -> ObjectInfo:
    """The :class:`ObjectInfo` of obstore's object metadata (a HEAD or GET answer)."""
    return ObjectInfo(
        size=int(meta["size"]),
        etag=meta.get("e_tag"),
        last_modified=meta.get("last_modified"),
        version=meta.get("version"),
    )
