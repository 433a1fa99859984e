"""Google Cloud Storage stores: the Google credential chain and emulator endpoints.

Order, first match wins: the bucket's `[buckets."gs://…"]` keys; `GOOGLE_APPLICATION_CREDENTIALS`
(a service-account key goes in as such, so URLs are signed locally; other ADC files as application
credentials); obstore's `GOOGLE_SERVICE_ACCOUNT*` / `GOOGLE_BEARER_TOKEN` variables; the gcloud
default credentials file; the GCE metadata service on a GCE VM; else unsigned requests.
`STORAGE_EMULATOR_HOST` (or the bucket's `endpoint`) sets the base URL.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from obstore.store import GCSStore

from mediatable.io.objects.options import StoreContext, StorePlan, bucket_names, file_stamp, plan
from mediatable.io.urls import MediaUrl

__all__ = ["GCS_HOST", "base_url", "gcs_plan", "service_account_file", "signed_url", "signing_key"]

GCS_HOST = "https://storage.googleapis.com"


def gcs_plan(url: MediaUrl, context: StoreContext) -> StorePlan:
    """How to build the store of `url`'s bucket with the credentials in effect now."""
    env = os.environ
    options = context.bucket_options(*bucket_names(url))
    overrides = dict(options.store)
    if "endpoint" in overrides:  # our spelling for every store; obstore calls it base_url here
        overrides["base_url"] = overrides.pop("endpoint")
    config: dict[str, Any] = {}
    emulator = env.get("STORAGE_EMULATOR_HOST")
    if emulator:
        config["base_url"] = emulator if "://" in emulator else f"http://{emulator}"
    signed, source = options.has_credentials, f'keys in [buckets."{options.name}"]'
    credentials = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not signed and credentials and options.anonymous is not True:
        # A service-account key goes in as such: then obstore signs URLs locally and honors the
        # key's own base URL; other ADC files (authorized_user, ...) as application credentials.
        kind = "service_account" if service_account_file(credentials) else "application_credentials"
        config[kind] = credentials
        signed, source = True, "GOOGLE_APPLICATION_CREDENTIALS"
    if not signed:
        adc = Path(env.get("HOME") or Path.home()) / ".config" / "gcloud" / "application_default_credentials.json"
        for found, name in (
            (env.get("GOOGLE_SERVICE_ACCOUNT") or env.get("GOOGLE_SERVICE_ACCOUNT_PATH"), "GOOGLE_SERVICE_ACCOUNT"),
            (env.get("GOOGLE_SERVICE_ACCOUNT_KEY"), "GOOGLE_SERVICE_ACCOUNT_KEY"),
            (env.get("GOOGLE_BEARER_TOKEN"), "GOOGLE_BEARER_TOKEN"),
            (adc.is_file(), "the gcloud default credentials file"),
            (context.use_instance_credentials("gcp"), "the GCE metadata service"),
        ):
            if found:
                signed, source = True, name
                break
    if options.anonymous is True or (options.anonymous is None and not signed):
        config = {k: v for k, v in config.items() if k == "base_url"}
        config["skip_signature"] = True
        source = (
            f'anonymous = true in [buckets."{options.name}"]'
            if options.anonymous
            else "no Google Cloud credentials found (GOOGLE_APPLICATION_CREDENTIALS, gcloud auth)"
        )
    config.update(overrides)
    allow_http = str(config.get("base_url", "")).startswith("http://")
    client = context.client(options.client, allow_http=allow_http)
    return plan(GCSStore, "GCS", "gs", url.bucket, config, client, source=source)


def service_account_file(path: str) -> dict[str, Any] | None:
    """The JSON of a service-account key file, or None when `path` is no such file.

    Examples:
        >>> service_account_file("/nonexistent.json") is None
        True
    """
    return _service_account_cached(path, file_stamp(Path(path)))


@functools.lru_cache(maxsize=32)
def _service_account_cached(path: str, stamp: tuple[int, int] | None) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("type") == "service_account" else None


def signed_url(
    key: dict[str, Any],
    base_url: str,
    bucket: str,
    name: str,
    expiration_seconds: int,
    now: datetime.datetime,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> str:
    """A GOOG4-RSA-SHA256 signed URL for `gs://bucket/name`, path-style on `base_url`'s host.

    The algorithm of https://cloud.google.com/storage/docs/access-control/signing-urls-manually,
    signed locally with the service account's private key (no network). A request through the URL
    must send exactly the signed `headers` (besides Host).

    Args:
        key: a service-account key (the JSON of its key file: `client_email`, `private_key`).
        base_url: `https://storage.googleapis.com`, or an emulator's base URL.
        bucket, name: the object.
        expiration_seconds: the link's lifetime (at most 7 days).
        now: the signing time (`X-Goog-Date`).
        method: the HTTP method the URL allows (`GET`, `PUT`, ...).
        headers: further headers to sign, e.g. `{"Content-Type": "image/png"}` for an upload.

    Examples:
        >>> from cryptography.hazmat.primitives.asymmetric import rsa
        >>> from cryptography.hazmat.primitives import serialization
        >>> pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        ...     serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        >>> key = {"client_email": "sa@p.iam.gserviceaccount.com", "private_key": pem.decode()}
        >>> when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        >>> url = signed_url(key, "https://storage.googleapis.com", "b", "a b.jpg", 60, when)
        >>> url.split("?")[0], "X-Goog-Date=20260102T030405Z" in url
        ('https://storage.googleapis.com/b/a%20b.jpg', True)
    """
    parts = urlsplit(base_url)
    host = parts.netloc
    stamp = now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{stamp[:8]}/auto/storage/goog4_request"
    resource = f"{parts.path.rstrip('/')}/{bucket}/{quote(name, safe='/~')}"
    signed = {"host": host, **{k.lower(): " ".join(str(v).split()) for k, v in (headers or {}).items()}}
    signed_names = ";".join(sorted(signed))
    query = {
        "X-Goog-Algorithm": "GOOG4-RSA-SHA256",
        "X-Goog-Credential": f"{key['client_email']}/{scope}",
        "X-Goog-Date": stamp,
        "X-Goog-Expires": str(expiration_seconds),
        "X-Goog-SignedHeaders": signed_names,
    }
    canonical_query = urlencode(sorted(query.items()), quote_via=quote, safe="~")
    canonical_headers = "".join(f"{k}:{signed[k]}\n" for k in sorted(signed))
    canonical_request = "\n".join(
        [method.upper(), resource, canonical_query, canonical_headers, signed_names, "UNSIGNED-PAYLOAD"]
    )
    to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", stamp, scope, hashlib.sha256(canonical_request.encode("ascii")).hexdigest()]
    )
    private_key = _load_private_key(key["private_key"])
    signature = private_key.sign(to_sign.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()).hex()
    return f"{parts.scheme}://{host}{resource}?{canonical_query}&X-Goog-Signature={signature}"


def signing_key(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The service-account key a GCS store's options name (a key file or inline JSON), or None.

    Examples:
        >>> signing_key({"base_url": "http://127.0.0.1:4443"}) is None
        True
    """
    options = {re.sub(r"^google_", "", str(k).lower()): v for k, v in config.items()}
    for name in ("service_account", "service_account_path", "application_credentials"):
        if options.get(name):
            return service_account_file(str(options[name]))
    inline = options.get("service_account_key")
    return _inline_key(str(inline)) if inline else None


def base_url(config: Mapping[str, Any], key: Mapping[str, Any] | None = None) -> str:
    """Where a GCS store sends requests: its `base_url`, the key's own `gcs_base_url`, or Google's."""
    return str(config.get("base_url") or (key or {}).get("gcs_base_url") or GCS_HOST).rstrip("/")


@functools.lru_cache(maxsize=16)
def _load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the service account's private_key is not an RSA key")
    return key


@functools.lru_cache(maxsize=8)
def _inline_key(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = json.loads(base64.b64decode(text))
        except ValueError:
            return None
    return data if isinstance(data, dict) and "private_key" in data and "client_email" in data else None
