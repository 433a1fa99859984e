"""Google Cloud Storage stores: the Google credential chain and emulator endpoints.

Order, first match wins: the bucket's `[buckets."gs://…"]` keys; `GOOGLE_APPLICATION_CREDENTIALS`
(a service-account key goes in as such, so URLs are signed locally; other ADC files as application
credentials); obstore's `GOOGLE_SERVICE_ACCOUNT*` / `GOOGLE_BEARER_TOKEN` variables; the gcloud
default credentials file; the GCE metadata service on a GCE VM; else unsigned requests.
`STORAGE_EMULATOR_HOST` (or the bucket's `endpoint`) sets the base URL.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from obstore.store import GCSStore

from mediatable.io.objects.options import StoreContext, StorePlan, bucket_names, file_stamp, plan
from mediatable.io.urls import MediaUrl

__all__ = ["gcs_plan", "service_account_file"]


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
