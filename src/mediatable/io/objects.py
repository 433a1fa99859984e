"""Object-store access: one obstore store per bucket and credentials, errors translated in one place.

:class:`ObjectStores` turns a :class:`~mediatable.io.urls.MediaUrl` into an obstore store plus the
object's path, building each store once (a build costs ~3 ms and owns a connection pool) and
reusing it from every thread. Credentials come from the standard places, checked when a URL is
resolved, so a changed environment gets a new store:

- **S3** (and S3-compatible endpoints): `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
  `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`,
  `AWS_ALLOW_HTTP`; else the profile `AWS_PROFILE` (or `default`) of `~/.aws/credentials` and
  `~/.aws/config` through boto3; else web-identity / container / instance credentials when present;
  else anonymous requests (public buckets).
- **GCS**: `GOOGLE_APPLICATION_CREDENTIALS` (or obstore's `GOOGLE_SERVICE_ACCOUNT*` variables, or the
  gcloud default credentials file); else anonymous. `STORAGE_EMULATOR_HOST` sets the base URL.
- **Azure**: `AZURE_STORAGE_CONNECTION_STRING`, then `AZURE_STORAGE_ACCOUNT_NAME`,
  `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN` (and obstore's other `AZURE_*` variables);
  else anonymous (public containers).
- **HTTP(S)**: no credentials; `user:password@` in the URL becomes a Basic `Authorization` header.

Per-bucket settings (`[buckets."s3://name"]` in `config.toml`) use obstore's own key names and win
over everything else; `anonymous = true` forces unsigned requests, `anonymous = false` forbids them.
HTTP client keys (`allow_http`, `timeout`, `proxy_url`, ...) in the same table go to the client.

obstore's own retries are off: the retry policy lives in `io/fetch.py`. Failures are mapped onto
:mod:`mediatable.errors` by :func:`translate_error`, which also scrubs secrets from obstore's
message (signed URLs appear in it verbatim).
"""

from __future__ import annotations

import base64
import collections
import configparser
import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import mimetypes
import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import obstore
import obstore.exceptions
from obstore.store import AzureStore, GCSStore, HTTPStore, LocalStore, ObjectStore, S3Store

from mediatable.config import Settings
from mediatable.errors import (
    ConfigError,
    Error,
    MediaAccessDenied,
    MediaError,
    MediaFetchError,
    MediaFetchTimeout,
    MediaNotFound,
)
from mediatable.io.urls import MediaUrl, is_url_like, parse_url, redact_url

__all__ = ["ObjectInfo", "ObjectStores", "translate_error"]

_log = logging.getLogger(__name__)

# Keys of obstore's ClientConfig: in a bucket's settings they configure the HTTP client, not the store.
_CLIENT_KEYS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "default_headers",
        "http1_only",
        "http2_keep_alive_interval",
        "http2_keep_alive_timeout",
        "http2_keep_alive_while_idle",
        "http2_only",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "randomize_addresses",
        "read_timeout",
        "root_certificate",
        "timeout",
        "user_agent",
    }
)
# Retries live in io/fetch.py; obstore retrying underneath would multiply attempts and hide failures.
_NO_RETRIES: dict[str, Any] = {"max_retries": 0, "retry_timeout": datetime.timedelta(minutes=3)}
# `request_timeout` bounds a stall (obstore's read_timeout). The overall limit only has to exceed
# any honest transfer: obstore's default of 30 s would cut every large video download short.
_WHOLE_TRANSFER_LIMIT = datetime.timedelta(hours=24)
# Stores for URLs that need one store each (query strings, odd paths): kept for reuse, but bounded.
_MAX_URL_STORES = 256
_AZURITE_ACCOUNT = "devstoreaccount1"
_CREDENTIAL_NAMES = {"s3": "AWS", "gs": "Google Cloud", "azure": "Azure"}
_TRUE = ("1", "true", "yes", "on")


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


class ObjectStores:
    """Builds, caches and hands out obstore stores for media URLs.

    Lifecycle: one instance per session (built from its :class:`Settings`); it holds no open files
    and needs no closing. Stores are created on first use and kept, keyed by kind, bucket, endpoint
    and the credentials in effect at that moment; per-URL HTTP stores are kept in a bounded LRU.
    Every method is safe to call from many threads at once.

    Args:
        settings: timeouts and per-bucket overrides come from here.
        instance_credentials: whether to let obstore ask a cloud metadata service (EC2 role, GCE
            service account, Azure managed identity) when no other credentials exist. None: only on a
            machine that identifies itself as such a VM (read from `/sys/class/dmi`, no network
            probe); elsewhere such requests go unsigned instead of waiting on 169.254.169.254.

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

    def __init__(self, settings: Settings, *, instance_credentials: bool | None = None) -> None:
        self._settings = settings
        self._instance_credentials = instance_credentials
        self._buckets = {key.lower().rstrip("/"): dict(value) for key, value in settings.buckets.items()}
        self._client_defaults: dict[str, Any] = {
            "connect_timeout": datetime.timedelta(seconds=settings.connect_timeout),
            "read_timeout": datetime.timedelta(seconds=settings.request_timeout),
            "timeout": _WHOLE_TRANSFER_LIMIT,
        }
        self._lock = threading.Lock()
        self._stores: dict[tuple[Any, ...], ObjectStore] = {}
        self._url_stores: collections.OrderedDict[tuple[Any, ...], ObjectStore] = collections.OrderedDict()
        self._aws_providers: dict[tuple[Any, ...], Any] = {}
        self._local = LocalStore()

    # -- public API -------------------------------------------------------------------------------

    def resolve(self, url: MediaUrl) -> tuple[ObjectStore, str]:
        """The obstore store holding `url`, and the object's path within it.

        Args:
            url: a parsed media URL of any kind; `file` URLs map to one local-filesystem store.

        Returns:
            `(store, path)`, ready for `obstore.get(store, path)`, `obstore.head`, `obstore.sign`, ...

        Raises:
            ConfigError: the URL's bucket cannot be configured (unknown option, Azure account missing).
            MediaFetchError: obstore rejects the URL itself.

        Examples:
            >>> import obstore
            >>> from mediatable.config import Settings
            >>> from mediatable.io.urls import parse_url
            >>> stores = ObjectStores(Settings())
            >>> store, path = stores.resolve(parse_url("https://example.com/a/b.jpg"))
            >>> path
            'a/b.jpg'
        """
        if url.kind == "file":
            return self._local, url.key.lstrip("/")
        if url.kind == "http" or (urlsplit(url.url).query and url.url.startswith(("http://", "https://"))):
            # A query string (signed URL, SAS URL) must reach the server byte for byte: obstore
            # only keeps it when it is part of the store's own URL.
            return self._http(url)
        if url.kind == "s3":
            key, build = self._s3_plan(url)
        elif url.kind == "gs":
            key, build = self._gcs_plan(url)
        elif url.kind == "azure":
            key, build = self._azure_plan(url)
        else:
            raise ConfigError(f"no object store for URL kind {url.kind!r}: {redact_url(url.url)}")
        return self._cached(key, build), url.key

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
            raise translate_error(exc, url.url) from exc
        return _head_info(meta)

    async def head_async(self, url: MediaUrl) -> ObjectInfo:
        """:meth:`head` for event loops (obstore's async API).

        Examples:
            >>> info = await stores.head_async(parse_url("s3://bucket/a.jpg"))  # doctest: +SKIP
        """
        store, path = self.resolve(url)
        try:
            meta = await obstore.head_async(store, path)
        except Exception as exc:
            raise translate_error(exc, url.url) from exc
        return _head_info(meta)

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
        store, path = self.resolve(url)
        if url.kind == "gs" and getattr(store, "config", {}).get("skip_signature") in (True, "true"):
            # obstore fetches a token for GCS uploads even when told not to sign: fail here, not
            # after a wait on the metadata server.
            raise MediaAccessDenied(
                f"cannot upload to {redact_url(url.url)} anonymously: set GOOGLE_APPLICATION_CREDENTIALS",
                url=redact_url(url.url),
            )
        options: dict[str, Any] = {}
        if url.kind in ("s3", "gs", "azure"):
            guessed = content_type or mimetypes.guess_type(url.key)[0]
            if guessed:
                options["attributes"] = {"Content-Type": guessed}
        try:
            result = obstore.put(store, path, source, **options)
        except Exception as exc:
            raise translate_error(exc, url.url) from exc
        return ObjectInfo(size=size, etag=result.get("e_tag"), last_modified=None, version=result.get("version"))

    def __repr__(self) -> str:
        # Only kinds and bucket names: the cache keys hold credentials.
        with self._lock:
            names = sorted({key[1] for key in self._stores})
            url_stores = len(self._url_stores)
        return f"ObjectStores(stores={names!r}, url_stores={url_stores})"

    def translate_error(self, exc: BaseException, url: str) -> MediaError:
        """:func:`translate_error`, plus a hint when access was denied to a request sent unsigned.

        Args:
            exc: what obstore (or the OS) raised.
            url: the media URL being read or written.

        Returns:
            The error to raise, e.g. `raise stores.translate_error(exc, url) from exc`.

        Examples:
            >>> from mediatable.config import Settings
            >>> stores = ObjectStores(Settings(buckets={"s3://private-bucket": {"anonymous": True}}))
            >>> error = stores.translate_error(PermissionError("denied"), "s3://private-bucket/k.jpg")
            >>> for part in str(error).split("; "):
            ...     print(part)
            access denied: s3://private-bucket/k.jpg
            the request was unsigned: anonymous = true in the bucket's settings
        """
        error = translate_error(exc, url)
        if not isinstance(error, MediaAccessDenied) or not is_url_like(url):
            return error
        try:
            media_url = parse_url(url)
            store, _ = self.resolve(media_url) if media_url.kind in _CREDENTIAL_NAMES else (None, "")
        except Error:
            return error
        config = getattr(store, "config", None) or {}
        if config.get("skip_signature") not in (True, "true"):
            return error
        if self._bucket_options(*_bucket_names(media_url))[2]:
            reason = "anonymous = true in the bucket's settings"
        else:
            reason = f"no {_CREDENTIAL_NAMES[media_url.kind]} credentials found"
        hinted = MediaAccessDenied(f"{error}; the request was unsigned: {reason}", url=error.url)
        hinted.status = getattr(error, "status", None)  # type: ignore[attr-defined]
        return hinted

    # -- caching ----------------------------------------------------------------------------------

    def _cached(self, key: tuple[Any, ...], build: Callable[[], ObjectStore]) -> ObjectStore:
        with self._lock:
            store = self._stores.get(key)
        if store is not None:
            return store
        # Built outside the lock: a boto3 session takes ~100 ms and must not stall other buckets.
        # Two threads may build the same store at once; setdefault keeps exactly one.
        store = self._build(build)
        with self._lock:
            return self._stores.setdefault(key, store)

    def _cached_url(self, key: tuple[Any, ...], build: Callable[[], ObjectStore]) -> ObjectStore:
        with self._lock:
            store = self._url_stores.get(key)
            if store is not None:
                self._url_stores.move_to_end(key)
                return store
        store = self._build(build)
        with self._lock:
            store = self._url_stores.setdefault(key, store)
            self._url_stores.move_to_end(key)
            while len(self._url_stores) > _MAX_URL_STORES:
                self._url_stores.popitem(last=False)
        return store

    @staticmethod
    def _build(build: Callable[[], ObjectStore]) -> ObjectStore:
        try:
            return build()
        except obstore.exceptions.BaseError as exc:
            # Build errors name the bad key or the missing value, but scrub anyway: never trust a message.
            raise ConfigError(f"cannot configure object store: {_scrub(_first_part(str(exc)))}") from None

    def _client(self, overrides: Mapping[str, Any], *, allow_http: bool = False) -> dict[str, Any]:
        client = dict(self._client_defaults)
        if allow_http:
            client["allow_http"] = True
        client.update(overrides)
        return client

    def _bucket_options(self, *names: str) -> tuple[dict[str, Any], dict[str, Any], bool | None]:
        """(store options, client options, anonymous) from the first `[buckets."<name>"]` table that exists."""
        for name in names:
            options = self._buckets.get(name.lower().rstrip("/"))
            if options is not None:
                break
        else:
            return {}, {}, None
        store: dict[str, Any] = {}
        client: dict[str, Any] = {}
        anonymous: bool | None = None
        for key, value in options.items():
            if key == "anonymous":
                anonymous = _truthy(value)
            elif key in _CLIENT_KEYS:
                client[key] = value
            else:
                # obstore takes strings (or bools); TOML also gives ints and floats.
                store[key] = value if isinstance(value, str | bool) else str(value)
        return store, client, anonymous

    # -- HTTP -------------------------------------------------------------------------------------

    def _http(self, url: MediaUrl) -> tuple[ObjectStore, str]:
        parts = urlsplit(url.url)
        scheme = parts.scheme
        host = parts.hostname or ""
        origin = f"{scheme}://{host}" + (f":{parts.port}" if parts.port else "")
        _, client_overrides, _ = self._bucket_options(origin)
        client = self._client(client_overrides, allow_http=scheme == "http")
        auth = _basic_auth(parts.username, parts.password)
        if auth:
            # obstore ignores userinfo in URLs; send it the way browsers do, and keep it out of the
            # store's URL (and so out of its repr and error messages).
            client["default_headers"] = {**client.get("default_headers", {}), "Authorization": auth}
        frozen_client = _freeze(client)
        path = parts.path.lstrip("/")
        if not parts.query and _origin_path(path):
            # One store per origin: requests to the same host share the connection pool
            # (0.6 ms/GET against 4.1 ms with a new store, i.e. a new connection, per URL).
            store = self._cached(
                ("http", origin, frozen_client),
                lambda: HTTPStore(origin, client_options=client, retry_config=_NO_RETRIES),
            )
            return store, unquote(path)
        exact = urlunsplit((scheme, parts.netloc.rpartition("@")[2], parts.path or "/", parts.query, ""))
        store = self._cached_url(
            ("http-url", exact, frozen_client),
            lambda: HTTPStore(exact, client_options=client, retry_config=_NO_RETRIES),
        )
        return store, ""

    # -- S3 ---------------------------------------------------------------------------------------

    def _s3_plan(self, url: MediaUrl) -> tuple[tuple[Any, ...], Callable[[], ObjectStore]]:
        env = os.environ
        bucket = url.bucket
        overrides, client_overrides, anonymous = self._bucket_options(*_bucket_names(url))
        config: dict[str, Any] = {}
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if endpoint:
            config["endpoint"] = endpoint
        provider = None
        provider_key: tuple[Any, ...] = ()
        explicit_keys = _has_credentials(overrides)
        signed = explicit_keys
        if anonymous is not True and not explicit_keys:
            if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
                config["access_key_id"] = env["AWS_ACCESS_KEY_ID"]
                config["secret_access_key"] = env["AWS_SECRET_ACCESS_KEY"]
                if env.get("AWS_SESSION_TOKEN"):
                    config["session_token"] = env["AWS_SESSION_TOKEN"]
                signed = True
            else:
                found = self._aws_profile()
                if found is not None:
                    provider_key, provider, profile_region = found
                    region = region or profile_region
                    signed = provider is not None
            if not signed:
                # Credentials obstore finds by itself: web identity (EKS), container (ECS), instance role.
                signed = bool(
                    (env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"))
                    or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                    or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                    or (
                        self._use_instance_credentials("aws")
                        and env.get("AWS_EC2_METADATA_DISABLED", "").lower() not in _TRUE
                    )
                )
        if region:
            config["region"] = region
        if anonymous is True or (anonymous is None and not signed):
            config["skip_signature"] = True
            provider, provider_key = None, ()
            config.pop("access_key_id", None)
            config.pop("secret_access_key", None)
            config.pop("session_token", None)
        config.update(overrides)
        endpoint = str(config.get("endpoint") or config.get("endpoint_url") or config.get("aws_endpoint") or "")
        allow_http = env.get("AWS_ALLOW_HTTP", "").lower() in _TRUE or endpoint.startswith("http://")
        client = self._client(client_overrides, allow_http=allow_http)
        return _plan(S3Store, "S3", "s3", bucket, config, client, provider_key, credential_provider=provider)

    def _aws_profile(self) -> tuple[tuple[Any, ...], Any, str | None] | None:
        """The profile's (cache key, boto3 credential provider or None, region), or None without profile files.

        boto3 is imported only here, on first need: it costs ~150 ms, which most sessions never pay.
        """
        env = os.environ
        home = Path(env.get("HOME") or Path.home())
        credentials_file = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
        config_file = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
        profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE")
        stamps = tuple(_file_stamp(f) for f in (credentials_file, config_file))
        if stamps == (None, None):
            if profile:
                raise ConfigError(
                    f"AWS_PROFILE={profile!r} is set but neither {credentials_file} nor {config_file} exists"
                )
            return None
        name = profile or "default"
        key = ("aws-profile", name, str(credentials_file), str(config_file), stamps)
        with self._lock:
            if key in self._aws_providers:
                return key, *self._aws_providers[key]
        has_credentials, region = _read_aws_profile(name, credentials_file, config_file)
        if profile and has_credentials is None:
            raise ConfigError(f"AWS profile {profile!r} is not defined in {credentials_file} or {config_file}")
        provider = None
        if has_credentials:
            # Deferred imports: boto3 costs ~150 ms, see the docstring.
            import boto3
            from obstore.auth.boto3 import Boto3CredentialProvider

            session = boto3.Session(profile_name=name)
            try:
                provider = Boto3CredentialProvider(session)
            except ValueError as exc:  # the profile names a source that yields nothing
                raise ConfigError(f"AWS profile {name!r} gives no credentials") from exc
            region = region or session.region_name
        with self._lock:
            self._aws_providers[key] = (provider, region)
        return key, provider, region

    # -- GCS --------------------------------------------------------------------------------------

    def _gcs_plan(self, url: MediaUrl) -> tuple[tuple[Any, ...], Callable[[], ObjectStore]]:
        env = os.environ
        bucket = url.bucket
        overrides, client_overrides, anonymous = self._bucket_options(*_bucket_names(url))
        if "endpoint" in overrides:  # our spelling for every store; obstore calls it base_url here
            overrides["base_url"] = overrides.pop("endpoint")
        config: dict[str, Any] = {}
        emulator = env.get("STORAGE_EMULATOR_HOST")
        if emulator:
            config["base_url"] = emulator if "://" in emulator else f"http://{emulator}"
        signed = False
        credentials = env.get("GOOGLE_APPLICATION_CREDENTIALS")
        if credentials and anonymous is not True:
            # A service-account key goes in as such: then obstore signs URLs locally and honors the
            # key's own base URL; other ADC files (authorized_user, ...) as application credentials.
            kind = "service_account" if _json_type(credentials) == "service_account" else "application_credentials"
            config[kind] = credentials
            signed = True
        if not signed:
            adc = Path(env.get("HOME") or Path.home()) / ".config" / "gcloud" / "application_default_credentials.json"
            signed = bool(
                any(env.get(name) for name in ("GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH"))
                or env.get("GOOGLE_SERVICE_ACCOUNT_KEY")
                or env.get("GOOGLE_BEARER_TOKEN")
                or adc.is_file()
                or self._use_instance_credentials("gcp")
            )
        if anonymous is True or (anonymous is None and not signed and not _has_credentials(overrides)):
            config = {k: v for k, v in config.items() if k == "base_url"}
            config["skip_signature"] = True
        config.update(overrides)
        allow_http = str(config.get("base_url", "")).startswith("http://")
        client = self._client(client_overrides, allow_http=allow_http)
        return _plan(GCSStore, "GCS", "gs", bucket, config, client)

    # -- Azure ------------------------------------------------------------------------------------

    def _azure_plan(self, url: MediaUrl) -> tuple[tuple[Any, ...], Callable[[], ObjectStore]]:
        env = os.environ
        container = url.bucket
        overrides, client_overrides, anonymous = self._bucket_options(*_bucket_names(url))

        # The environment's account: connection string first, single variables override its parts.
        config = _parse_connection_string(env.get("AZURE_STORAGE_CONNECTION_STRING", ""))
        for var, name in (
            ("AZURE_STORAGE_ACCOUNT_NAME", "account_name"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "account_key"),
            ("AZURE_STORAGE_ACCESS_KEY", "account_key"),
            ("AZURE_STORAGE_SAS_TOKEN", "sas_key"),
            ("AZURE_STORAGE_SAS_KEY", "sas_key"),
            ("AZURE_STORAGE_ENDPOINT", "endpoint"),
        ):
            if env.get(var):
                config[name] = env[var]
        if env.get("AZURE_STORAGE_USE_EMULATOR", "").lower() in _TRUE:
            config["use_emulator"] = True
        if config.get("use_emulator"):
            config.setdefault("account_name", _AZURITE_ACCOUNT)
        if url.account and config.get("account_name") not in (None, url.account):
            # The URL names another account: the environment's key or SAS would be wrong for it.
            config = {}
        if url.account:
            config["account_name"] = url.account
        if "sas_key" in config:
            config["sas_key"] = str(config["sas_key"]).lstrip("?")
        signed = any(k in config for k in ("account_key", "sas_key", "use_emulator")) or bool(
            env.get("AZURE_STORAGE_TOKEN")
            or env.get("AZURE_CLIENT_SECRET")
            or env.get("AZURE_STORAGE_CLIENT_SECRET")
            or env.get("AZURE_FEDERATED_TOKEN_FILE")
            or env.get("AZURE_USE_AZURE_CLI", "").lower() in _TRUE
            or self._use_instance_credentials("azure")
        )
        if anonymous is True or (anonymous is None and not signed and not _has_credentials(overrides)):
            config = {k: v for k, v in config.items() if k in ("account_name", "endpoint", "use_emulator")}
            config["skip_signature"] = True
        config.update(overrides)
        if config.get("use_emulator") is True or str(config.get("use_emulator", "")).lower() in _TRUE:
            # Azurite's account; without a name obstore's repr of the store panics.
            config.setdefault("account_name", _AZURITE_ACCOUNT)
        if not config.get("account_name"):
            raise ConfigError(
                f"no Azure storage account for {redact_url(url.url)}: set AZURE_STORAGE_ACCOUNT_NAME or "
                f"AZURE_STORAGE_CONNECTION_STRING, use an https://<account>.blob.core.windows.net/ URL, "
                f'or set account_name in [buckets."az://{container}"]'
            )
        endpoint = str(config.get("endpoint", ""))
        allow_http = endpoint.startswith("http://") or bool(config.get("use_emulator"))
        client = self._client(client_overrides, allow_http=allow_http)
        return _plan(AzureStore, "Azure", "az", container, config, client)

    # -- instance credentials ---------------------------------------------------------------------

    def _use_instance_credentials(self, cloud: str) -> bool:
        if self._instance_credentials is not None:
            return self._instance_credentials
        return _cloud_vm() == cloud


# -- errors -----------------------------------------------------------------------------------------

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>`,)]+")
_SECRET_PAIR = re.compile(
    r"(?i)\b(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential|token|access_token|sas_key|sas_token|accountkey|account_key|sharedaccesssignature|"
    r"secret|secret_access_key|password|client_secret|private_key)(\s*[=:]\s*)(\"?)[^&;\s\"'<>]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic|sharedkey|aws4-hmac-sha256)\s+[^\s\"'<>]+")
_STATUS = re.compile(r"status code: (\d{3})([^:\n]*)(?::\s?(.*))?", re.DOTALL)
_DEBUG_STATUS = re.compile(r"\bstatus: (\d{3})\b")
_HTTP_KIND = re.compile(r"HttpError \{\s*kind: (\w+)")
_OS_KIND = re.compile(r"kind: (ConnectionReset|ConnectionRefused|ConnectionAborted|BrokenPipe|TimedOut|UnexpectedEof)")
_OS_MESSAGE = re.compile(r'(?:message|error): "([^"]{1,200})"')
_XML_CODE = re.compile(r"<Code>\s*([^<]{1,100}?)\s*</Code>")
_XML_MESSAGE = re.compile(r"<Message>\s*([^<\n]{1,300})")
_JSON_MESSAGE = re.compile(r'"message"\s*:\s*"([^"]{1,300})"')
_RETRYABLE_STATUS = frozenset({408, 425, 429})


def _head_info(meta: Mapping[str, Any]) -> ObjectInfo:
    """The :class:`ObjectInfo` of obstore's object metadata (a HEAD answer)."""
    return ObjectInfo(
        size=int(meta["size"]),
        etag=meta.get("e_tag"),
        last_modified=meta.get("last_modified"),
        version=meta.get("version"),
    )


def _plan(
    store_class: Any,
    label: str,
    scheme: str,
    bucket: str,
    config: dict[str, Any],
    client: dict[str, Any],
    provider_key: tuple[Any, ...] = (),
    **extra: Any,
) -> tuple[tuple[Any, ...], Callable[[], ObjectStore]]:
    """The cache key of a bucket's store (everything that makes two stores differ) and how to build it."""
    key = (scheme, f"{scheme}://{bucket}", _freeze(config), _freeze(client), provider_key)

    def build() -> ObjectStore:
        _log.debug("new %s store for %s://%s (%s)", label, scheme, bucket, _describe(config, provider_key))
        return store_class(bucket, config=config, client_options=client, retry_config=_NO_RETRIES, **extra)

    return key, build


def translate_error(exc: BaseException, url: str) -> MediaError:
    """Map an obstore or OS error for `url` onto :mod:`mediatable.errors`, without secrets.

    ==========================================  ==============================================
    failure                                     result
    ==========================================  ==============================================
    missing object or bucket, HTTP 404          :class:`MediaNotFound`
    HTTP 401 / 403, permission denied           :class:`MediaAccessDenied`
    connect / read / overall timeout            :class:`MediaFetchTimeout` (retryable)
    HTTP 5xx, 408, 429, reset, refused, cut     :class:`MediaFetchError`, ``retryable=True``
    other HTTP 4xx, bad path, DNS, config       :class:`MediaFetchError`, ``retryable=False``
    ==========================================  ==============================================

    The result carries `.url` (redacted) and `.status` (the HTTP status, or None). obstore puts request
    URLs in its messages verbatim (query strings, i.e. signatures and SAS tokens, included), so `exc`'s
    own message is replaced in place by a scrubbed one: `raise translate_error(exc, url) from exc` then
    prints no secret anywhere in the traceback.

    Args:
        exc: what obstore (or the OS) raised.
        url: the media URL being read or written; only its redacted form is kept.

    Returns:
        The error to raise (`exc` itself when it already is a :class:`MediaError`).

    Examples:
        >>> err = translate_error(FileNotFoundError("gone"), "https://h/a.jpg?sig=SECRET")
        >>> type(err).__name__, err.url
        ('MediaNotFound', 'https://h/a.jpg?…')
        >>> translate_error(TimeoutError(), "s3://b/k").is_retryable
        True
    """
    if isinstance(exc, MediaError):
        return exc
    safe_url = redact_url(url)
    text = str(exc)
    head, _, debug = text.partition("\n\nDebug source:")
    status, reason, body = None, "", ""
    match = _STATUS.search(head)
    if match:
        status, reason, body = int(match.group(1)), match.group(2).strip(), match.group(3) or ""
        head = head[: match.end(2)]
    elif found := _DEBUG_STATUS.search(debug):
        status = int(found.group(1))
    http_kind = (_HTTP_KIND.search(debug) or _HTTP_KIND.search(head) or _NO_MATCH).group(1)
    os_kind = (_OS_KIND.search(debug) or _NO_MATCH).group(1)
    os_message = (_OS_MESSAGE.search(debug) or _NO_MATCH).group(1)
    lowered = text.lower()

    body_detail = detail = _body_detail(body)
    if status is not None:
        detail = f"HTTP {status} {reason}".strip() + (f" - {detail}" if detail else "")
    elif os_message:
        detail = os_message
    elif http_kind:
        detail = {"Connect": "cannot connect", "Interrupted": "connection closed mid-transfer"}.get(http_kind)

    timeout = isinstance(exc, TimeoutError) or http_kind == "Timeout" or os_kind == "TimedOut"
    # "Name or service not known" will not change by retrying; "Temporary failure in name resolution" may.
    dns = ("dns error" in lowered or "failed to lookup address" in lowered) and "temporary" not in lowered
    connection = (
        isinstance(exc, ConnectionError)
        or http_kind in ("Connect", "Interrupted", "Request", "Decode")
        or os_kind in ("ConnectionReset", "ConnectionRefused", "ConnectionAborted", "BrokenPipe", "UnexpectedEof")
    )

    error: MediaError
    if isinstance(exc, FileNotFoundError | obstore.exceptions.NotFoundError) or status == 404:
        error = MediaNotFound(_message("not found", safe_url, detail), url=safe_url)
    elif isinstance(
        exc,
        PermissionError | obstore.exceptions.PermissionDeniedError | obstore.exceptions.UnauthenticatedError,
    ) or status in (401, 403):
        error = MediaAccessDenied(_message("access denied", safe_url, detail), url=safe_url)
    elif timeout and status is None:
        error = MediaFetchTimeout(_message("timed out", safe_url, detail or "no answer in time"), url=safe_url)
    elif status is not None:
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        summary = "server error" if status >= 500 else "request failed"
        error = MediaFetchError(_message(summary, safe_url, detail), url=safe_url, status=status, retryable=retryable)
    elif dns:
        error = MediaFetchError(_message("unknown host", safe_url, detail or "DNS lookup failed"), url=safe_url)
    elif connection:
        error = MediaFetchError(_message("connection failed", safe_url, detail), url=safe_url, retryable=True)
    elif "builder error" in lowered:
        hint = "plain http:// needs allow_http = true (AWS_ALLOW_HTTP=true, or in the bucket's settings)"
        error = MediaFetchError(_message("cannot send request", safe_url, hint), url=safe_url)
    elif isinstance(exc, ValueError | obstore.exceptions.InvalidPathError):
        error = MediaFetchError(_message("invalid object path", safe_url, _scrub(_first_line(head))), url=safe_url)
    elif type(exc).__name__ == "PanicException":
        error = MediaFetchError(_message("object store crashed", safe_url, _scrub(_first_line(head))), url=safe_url)
    elif isinstance(exc, Error):
        error = MediaFetchError(_message(type(exc).__name__, safe_url, _scrub(_first_line(head))), url=safe_url)
    else:
        error = MediaFetchError(_message("transfer failed", safe_url, _scrub(_first_line(head))), url=safe_url)
    # Not every class in the tree declares .status; set it on all so callers can read it uniformly.
    error.status = status  # type: ignore[attr-defined]
    _scrub_in_place(exc, head, body_detail or os_message, http_kind)
    return error


class _NoMatch:
    @staticmethod
    def group(_: int) -> None:
        return None


_NO_MATCH = _NoMatch()


def _message(summary: str, safe_url: str, detail: str | None) -> str:
    return f"{summary}: {safe_url}" + (f" ({detail})" if detail else "")


def _body_detail(body: str) -> str | None:
    """The useful words of an error body (XML Code/Message or a JSON message), never the whole body.

    Bodies may echo the request: S3's SignatureDoesNotMatch includes the string to sign, Azure's
    AuthenticationErrorDetail the signature.
    """
    if not body.strip():
        return None
    code = _XML_CODE.search(body)
    message = _XML_MESSAGE.search(body) or _JSON_MESSAGE.search(body)
    parts = [code.group(1) + ":" if code and message else code.group(1) if code else None]
    parts.append(message.group(1).strip() if message else None)
    if not code and not message:
        plain = body.strip()
        parts = [plain] if len(plain) <= 100 and "\n" not in plain and "<" not in plain else []
    text = " ".join(p for p in parts if p)
    return _scrub(text)[:300] or None


def _scrub(text: str) -> str:
    """`text` with URLs redacted and anything that looks like a credential masked."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}***", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} ***", text)


def _first_part(text: str) -> str:
    return text.partition("\n\nDebug source:")[0].strip()


def _first_line(text: str) -> str:
    return text.strip().partition("\n")[0][:300]


def _scrub_in_place(exc: BaseException, head: str, detail: str | None, http_kind: str | None) -> None:
    """Replace `exc`'s message by its scrubbed first part, so a chained traceback shows no secret."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return  # a real OS error: its message is the OS's, built from errno and a local file name
    cleaned = _scrub(_first_line(head))
    extras = [x for x in (detail, http_kind and f"kind: {http_kind}") if x]
    if extras:
        cleaned += f" [{'; '.join(extras)}]"
    with contextlib.suppress(AttributeError, TypeError):  # exotic exception types with fixed args
        exc.args = (cleaned,)


# -- helpers ----------------------------------------------------------------------------------------

# Characters the `url` crate (inside obstore) leaves as they are in a path segment. A key that
# re-encodes identically under this set reaches the server byte for byte via a per-origin store.
_URL_CRATE_SAFE = "!$&'()*+,:;=@[]^|"


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


# Store options (obstore names, any of their prefixed aliases) that make requests signed.
_CREDENTIAL_OPTIONS = frozenset(
    {
        "access_key_id",
        "secret_access_key",
        "session_token",
        "token",
        "role_arn",
        "web_identity_token_file",
        "container_credentials_relative_uri",
        "container_credentials_full_uri",
        "service_account",
        "service_account_path",
        "service_account_key",
        "application_credentials",
        "bearer_token",
        "account_key",
        "access_key",
        "master_key",
        "sas_key",
        "sas_token",
        "client_secret",
        "federated_token_file",
        "use_azure_cli",
        "use_emulator",
        "msi_endpoint",
        "identity_endpoint",
    }
)


def _has_credentials(options: Mapping[str, Any]) -> bool:
    """Whether per-bucket options carry credentials of their own (so the store must not go unsigned)."""
    for key in options:
        name = re.sub(r"^(aws_|google_|azure_storage_|azure_)", "", key.lower())
        if name in _CREDENTIAL_OPTIONS:
            return True
    return False


def _bucket_names(url: MediaUrl) -> list[str]:
    """Keys of `[buckets."..."]` tables that configure `url`'s bucket, most specific first."""
    if url.kind != "azure":
        return [f"{url.kind}://{url.bucket}"]
    container = url.bucket
    names = [f"az://{container}", f"abfs://{container}", f"abfss://{container}", f"azure://{container}"]
    if url.account:
        names.insert(0, f"https://{url.account}.blob.core.windows.net/{container}")
    return names


def _basic_auth(username: str | None, password: str | None) -> str | None:
    if not username and not password:
        return None
    pair = f"{unquote(username or '')}:{unquote(password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _freeze(value: Any) -> Any:
    """A hashable copy of nested dicts/lists, for cache keys."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set):
        return tuple(_freeze(v) for v in value)
    return value


def _describe(config: Mapping[str, Any], provider_key: tuple[Any, ...]) -> str:
    """How a store authenticates, for debug logs: names of settings only, never values."""
    if config.get("skip_signature") in (True, "true"):
        how = "anonymous"
    elif provider_key:
        how = f"AWS profile {provider_key[1]!r}"
    else:
        secret_names = ("access_key_id", "account_key", "sas_key", "service_account", "application_credentials")
        how = "credentials: " + (", ".join(k for k in secret_names if k in config) or "from the environment")
    endpoint = config.get("endpoint") or config.get("base_url")
    return how + (f", endpoint {redact_url(str(endpoint))}" if endpoint else "")


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in _TRUE


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


_AWS_CREDENTIAL_KEYS = (
    "aws_access_key_id",
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
    "credential_source",
    "source_profile",
)


def _read_aws_profile(name: str, credentials_file: Path, config_file: Path) -> tuple[bool | None, str | None]:
    """(whether the profile holds credentials, or None if it is not defined at all; its region)."""
    found = False
    has_credentials = False
    region = None
    for path, section in ((credentials_file, name), (config_file, name if name == "default" else f"profile {name}")):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
        if parser.has_section(section):
            found = True
            options = dict(parser.items(section))
            has_credentials = has_credentials or any(options.get(k) for k in _AWS_CREDENTIAL_KEYS)
            region = region or options.get("region")
    return (has_credentials if found else None), region


@functools.lru_cache(maxsize=32)
def _json_type_cached(path: str, stamp: tuple[int, int] | None) -> str | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data.get("type") if isinstance(data, dict) else None


def _json_type(path: str) -> str | None:
    return _json_type_cached(path, _file_stamp(Path(path)))


def _parse_connection_string(text: str) -> dict[str, Any]:
    """obstore options from an Azure connection string (`AccountName=...;AccountKey=...;...`)."""
    parts: dict[str, str] = {}
    for item in text.split(";"):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name.strip().lower()] = value.strip()
    config: dict[str, Any] = {}
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        config["use_emulator"] = True
        config["account_name"] = _AZURITE_ACCOUNT
    if parts.get("accountname"):
        config["account_name"] = parts["accountname"]
    if parts.get("accountkey"):
        config["account_key"] = parts["accountkey"]
    if parts.get("sharedaccesssignature"):
        config["sas_key"] = parts["sharedaccesssignature"]
    if parts.get("blobendpoint"):
        config["endpoint"] = parts["blobendpoint"].rstrip("/")
    elif parts.get("endpointsuffix") and parts.get("accountname"):
        protocol = parts.get("defaultendpointsprotocol", "https")
        config["endpoint"] = f"{protocol}://{parts['accountname']}.blob.{parts['endpointsuffix']}"
    return config


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@functools.cache
def _cloud_vm() -> str | None:
    """Which cloud this VM belongs to, from DMI data the firmware sets (no network probe), or None."""
    dmi = "/sys/class/dmi/id/"
    vendor = _read_text(dmi + "sys_vendor") + " " + _read_text(dmi + "bios_vendor")
    if "Amazon" in vendor or _read_text("/sys/hypervisor/uuid").lower().startswith("ec2"):
        return "aws"
    if "Google" in _read_text(dmi + "product_name") or "Google" in vendor:
        return "gcp"
    if _read_text(dmi + "chassis_asset_tag") == "7783-7084-3265-9085-8269-3286-77":  # Azure's documented tag
        return "azure"
    return None
