"""Presigned URLs: time-limited HTTPS links to objects in private buckets, signed on this machine.

=====================  ===============================================================  ==========
URL                    result                                                           max expiry
=====================  ===============================================================  ==========
`s3://` (and S3-       SigV4 query signature for the store's endpoint and region,       7 days
compatible endpoints)  session token included (`X-Amz-Security-Token`)
`gs://`                GOOG4-RSA-SHA256, signed with the service-account key, for the   7 days
                       store's endpoint (storage.googleapis.com, or an emulator's)
`az://`, Azure https   a service SAS (read) signed with the account key                 none
`http(s)://`           unchanged (already servable; a query string is kept as is)
`file://`, local path  an error: local files cannot be served by a link
=====================  ===============================================================  ==========

Signing is batched per store and needs no network with static keys (AWS keys or profile, a GCS
service-account key file, an Azure account key or connection string). A URL whose store has no
credentials, or only credentials that cannot sign (an Azure SAS token), is that URL's
:class:`~mediatable.errors.PresignError`. Presigned URLs are secrets until they expire: messages
and reprs show them redacted.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import obstore
import obstore.exceptions

from mediatable.errors import DataError, InvalidArgument, MediaError, PresignError
from mediatable.io.objects import ObjectStores, gcs
from mediatable.io.objects.errors import scrub
from mediatable.io.urls import MediaUrl, parse_url, redact_url

__all__ = ["MAX_EXPIRATION", "Presigner", "check_expiration"]

SEVEN_DAYS = 7 * 24 * 3600
MAX_EXPIRATION: dict[str, int] = {"s3": SEVEN_DAYS, "gs": SEVEN_DAYS}
"""The longest expiry each provider accepts, in seconds, by URL kind (Azure SAS have none)."""
_PROVIDER = {"s3": "S3", "gs": "GCS", "azure": "Azure"}


def check_expiration(expiration_seconds: Any, kind: str | None = None) -> int:
    """`expiration_seconds` as a positive int, checked against the maximum of `kind`'s provider.

    Args:
        expiration_seconds: the lifetime asked for.
        kind: a URL kind (`"s3"`, `"gs"`, `"azure"`, ...); None checks only that it is positive.

    Raises:
        InvalidArgument: not a whole number of seconds, not positive, or more than the provider allows.

    Examples:
        >>> check_expiration(3600, "s3")
        3600
        >>> check_expiration(8 * 86400, "gs")
        Traceback (most recent call last):
        ...
        mediatable.errors.InvalidArgument: expiration_seconds=691200 (8 days) is more than GCS allows (7 days)
    """
    if isinstance(expiration_seconds, bool) or not isinstance(expiration_seconds, int):
        raise InvalidArgument(f"expiration_seconds must be a whole number of seconds, not {expiration_seconds!r}")
    if expiration_seconds <= 0:
        raise InvalidArgument(f"expiration_seconds must be positive, not {expiration_seconds}")
    limit = MAX_EXPIRATION.get(kind or "")
    if limit is not None and expiration_seconds > limit:
        raise InvalidArgument(
            f"expiration_seconds={expiration_seconds} ({_days(expiration_seconds)}) is more than "
            f"{_PROVIDER[kind or '']} allows ({_days(limit)})"
        )
    return expiration_seconds


class Presigner:
    """Turns media URLs into presigned HTTPS URLs, many at once, with the session's stores.

    Lifecycle: one per session; holds loaded service-account keys (reloaded when their file
    changes) and nothing to close. Safe to use from many threads.

    Args:
        stores: the session's object stores (credentials, endpoints).

    Examples:
        >>> from mediatable.config import Settings
        >>> presigner = Presigner(ObjectStores(Settings(), instance_credentials=False))
        >>> presigner.presign(["https://example.com/a.jpg"], 60)
        ['https://example.com/a.jpg']
        >>> type(presigner.presign(["/tmp/a.jpg"], 60)[0]).__name__
        'PresignError'
    """

    def __init__(self, stores: ObjectStores) -> None:
        self._stores = stores

    def presign(self, urls: Sequence[str], expiration_seconds: int) -> list[str | MediaError]:
        """A presigned URL (or that URL's error) for each of `urls`, in order.

        Args:
            urls: media URLs or local paths.
            expiration_seconds: how long the links stay valid; checked up front.

        Returns:
            For each URL, the HTTPS URL to serve, or the :class:`~mediatable.errors.MediaError`
            saying why it cannot be presigned (no credentials, a local file, past the provider's maximum).

        Raises:
            InvalidArgument: `expiration_seconds` is not a positive whole number.
        """
        check_expiration(expiration_seconds)
        out: list[str | MediaError] = [""] * len(urls)
        groups: dict[int, tuple[Any, str, list[tuple[int, MediaUrl]]]] = {}
        for index, raw in enumerate(urls):
            try:
                url = parse_url(raw)
                if url.kind == "http" or urlsplit(url.url).query:
                    out[index] = raw  # servable as it is (a query string may already be a signature)
                    continue
                store, kind = self._signable(url, expiration_seconds)
            except (MediaError, DataError, InvalidArgument) as exc:
                out[index] = _as_media_error(exc, raw)
                continue
            groups.setdefault(id(store), (store, kind, []))[2].append((index, url))
        for store, kind, members in groups.values():
            try:
                signed = self._sign(store, kind, [url for _, url in members], expiration_seconds)
            except (MediaError, OSError, ValueError, obstore.exceptions.BaseError) as exc:
                for index, url in members:
                    out[index] = _sign_failure(exc, url)
                continue
            for (index, _), value in zip(members, signed, strict=True):
                out[index] = value
        return out

    def _signable(self, url: MediaUrl, expiration_seconds: int) -> tuple[Any, str]:
        """The store that signs `url`, and how; raises what makes `url` unsignable."""
        safe = redact_url(url.url)
        if url.kind == "file":
            raise PresignError(
                f"cannot presign a local file ({safe}): a link can only point at a server. Write the media "
                "to a bucket (add_computed_column(..., destination='s3://bucket/prefix/')) and presign that, "
                "or serve the folder over HTTP and store http:// URLs",
                url=safe,
            )
        try:
            check_expiration(expiration_seconds, url.kind)
        except InvalidArgument as exc:
            raise PresignError(f"cannot presign {safe}: {exc}", url=safe) from None
        store, _ = self._stores.resolve(url)
        credentials = self._stores.credentials(url)
        if not credentials.signed:
            raise PresignError(
                f"cannot presign {safe}: the store has no credentials to sign with ({credentials.source})", url=safe
            )
        config = store.config
        if url.kind == "azure" and not _has(config, "account_key", "access_key", "master_key") and _has(config, "sas"):
            raise PresignError(
                f"cannot presign {safe}: a SAS token cannot sign new links; set AZURE_STORAGE_ACCOUNT_KEY "
                "(or a connection string with AccountKey)",
                url=safe,
            )
        if url.kind == "gs" and gcs.signing_key(config) is not None:
            return store, "gcs-key"
        return store, "obstore"

    def _sign(self, store: Any, kind: str, urls: list[MediaUrl], expiration_seconds: int) -> list[str]:
        if kind == "gcs-key":
            key = gcs.signing_key(store.config)
            assert key is not None
            base, now = gcs.base_url(store.config, key), datetime.datetime.now(datetime.UTC)
            return [gcs.signed_url(key, base, url.bucket, url.key, expiration_seconds, now) for url in urls]
        expires = datetime.timedelta(seconds=expiration_seconds)
        return list(obstore.sign(store, "GET", [url.key for url in urls], expires))


def _has(config: dict[str, Any], *names: str) -> bool:
    return any(name in str(key).lower() for key in config for name in names)


def _as_media_error(exc: BaseException, raw: str) -> MediaError:
    if isinstance(exc, MediaError):
        return exc
    safe = redact_url(raw)
    return PresignError(f"cannot presign {safe}: {exc}", url=safe)


def _sign_failure(exc: BaseException, url: MediaUrl) -> MediaError:
    safe = redact_url(url.url)
    if isinstance(exc, MediaError):
        return exc
    reason = scrub(str(exc).partition("\n")[0])[:300]
    return PresignError(f"cannot presign {safe}: {type(exc).__name__}: {reason}", url=safe)


def _days(seconds: int) -> str:
    days = seconds / 86400
    return f"{days:g} day" + ("" if days == 1 else "s")
