"""What every store plan needs: per-bucket settings, HTTP client options, and the plan itself.

A :class:`StorePlan` is how one bucket's store is built: its cache key (everything that makes two
stores differ, credentials included), the builder, and a description of where its credentials came
from (names of settings and files, never values) for messages such as "the request was unsigned".
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import obstore.exceptions
from obstore.store import ObjectStore

from mediatable.config import Settings
from mediatable.errors import MediaConfigError
from mediatable.io.objects.errors import first_part, scrub
from mediatable.io.urls import MediaUrl, redact_url

_log = logging.getLogger("mediatable.io.objects")

# Keys of obstore's ClientConfig: in a bucket's settings they configure the HTTP client, not the store.
CLIENT_KEYS = frozenset(
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
NO_RETRIES: dict[str, Any] = {"max_retries": 0, "retry_timeout": datetime.timedelta(minutes=3)}
# `request_timeout` bounds a stall (obstore's read_timeout). The overall limit only has to exceed
# any honest transfer: obstore's default of 30 s would cut every large video download short.
_WHOLE_TRANSFER_LIMIT = datetime.timedelta(hours=24)
_TRUE = ("1", "true", "yes", "on")

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


@dataclasses.dataclass(frozen=True)
class BucketOptions:
    """One `[buckets."scheme://name"]` table of `config.toml`, sorted by where each key goes.

    Attributes:
        store: obstore store options (values as strings or bools).
        client: obstore HTTP client options.
        anonymous: `anonymous = true|false` when set, else None.
        name: the table's name, for messages; "" when no table matched.
    """

    store: dict[str, Any] = dataclasses.field(default_factory=dict)
    client: dict[str, Any] = dataclasses.field(default_factory=dict)
    anonymous: bool | None = None
    name: str = ""

    @property
    def has_credentials(self) -> bool:
        """Whether the table carries credentials of its own (so the store must not go unsigned)."""
        for key in self.store:
            if re.sub(r"^(aws_|google_|azure_storage_|azure_)", "", key.lower()) in _CREDENTIAL_OPTIONS:
                return True
        return False


@dataclasses.dataclass(frozen=True)
class StorePlan:
    """How to build one bucket's store.

    Attributes:
        key: the cache key; equal keys give interchangeable stores.
        build: builds the store (may raise obstore's configuration errors).
        signed: whether requests will carry credentials.
        source: where the credentials came from, or why there are none (setting names only).
    """

    key: tuple[Any, ...]
    build: Callable[[], ObjectStore]
    signed: bool
    source: str


class StoreContext:
    """Settings every plan reads: bucket tables, client defaults, whether to ask a metadata service.

    Args:
        settings: timeouts and `[buckets]` tables.
        instance_credentials: True/False to allow or forbid cloud metadata credentials; None: only
            on a VM of that cloud (see :func:`cloud_vm`).
    """

    def __init__(self, settings: Settings, instance_credentials: bool | None) -> None:
        self.settings = settings
        self.instance_credentials = instance_credentials
        self._buckets = {key.lower().rstrip("/"): dict(value) for key, value in settings.buckets.items()}
        self._client_defaults: dict[str, Any] = {
            "connect_timeout": datetime.timedelta(seconds=settings.connect_timeout),
            "read_timeout": datetime.timedelta(seconds=settings.request_timeout),
            "timeout": _WHOLE_TRANSFER_LIMIT,
        }

    def bucket_options(self, *names: str) -> BucketOptions:
        """The first `[buckets."<name>"]` table that exists among `names`, sorted into store and client keys."""
        for name in names:
            options = self._buckets.get(name.lower().rstrip("/"))
            if options is not None:
                break
        else:
            return BucketOptions()
        store: dict[str, Any] = {}
        client: dict[str, Any] = {}
        anonymous: bool | None = None
        for key, value in options.items():
            if key == "anonymous":
                anonymous = truthy(value)
            elif key in CLIENT_KEYS:
                client[key] = value
            else:
                # obstore takes strings (or bools); TOML also gives ints and floats.
                store[key] = value if isinstance(value, str | bool) else str(value)
        return BucketOptions(store, client, anonymous, name)

    def client(self, overrides: Mapping[str, Any], *, allow_http: bool = False) -> dict[str, Any]:
        """obstore client options: the session's timeouts, then `overrides`."""
        client = dict(self._client_defaults)
        if allow_http:
            client["allow_http"] = True
        client.update(overrides)
        return client

    def use_instance_credentials(self, cloud: str) -> bool:
        """Whether obstore may ask `cloud`'s metadata service ("aws", "gcp", "azure") for credentials."""
        if self.instance_credentials is not None:
            return self.instance_credentials
        return cloud_vm() == cloud


def bucket_names(url: MediaUrl) -> list[str]:
    """Keys of `[buckets."..."]` tables that configure `url`'s bucket, most specific first."""
    if url.kind != "azure":
        return [f"{url.kind}://{url.bucket}"]
    container = url.bucket
    names = [f"az://{container}", f"abfs://{container}", f"abfss://{container}", f"azure://{container}"]
    if url.account:
        names.insert(0, f"https://{url.account}.blob.core.windows.net/{container}")
    return names


def plan(
    store_class: Any,
    label: str,
    scheme: str,
    bucket: str,
    config: dict[str, Any],
    client: dict[str, Any],
    *,
    source: str,
    provider_key: tuple[Any, ...] = (),
    **extra: Any,
) -> StorePlan:
    """The plan of a bucket's store of `store_class`, built with obstore's own retries off."""
    key = (scheme, f"{scheme}://{bucket}", freeze(config), freeze(client), provider_key)
    signed = not is_unsigned(config)

    def build() -> ObjectStore:
        _log.debug("new %s store for %s://%s (%s)", label, scheme, bucket, describe(config, source))
        return store_class(bucket, config=config, client_options=client, retry_config=NO_RETRIES, **extra)

    return StorePlan(key=key, build=build, signed=signed, source=source)


def build_store(build: Callable[[], ObjectStore], url: str) -> ObjectStore:
    """Run a store builder for the (redacted) `url`; obstore's configuration errors become that URL's error.

    Raises:
        MediaConfigError: the store cannot be configured (an unknown option, a malformed key).
    """
    try:
        return build()
    except obstore.exceptions.BaseError as exc:
        # Build errors name the bad key or the missing value, but scrub anyway: never trust a message.
        reason = scrub(first_part(str(exc)))
        raise MediaConfigError(f"cannot configure the object store for {url}: {reason}", url=url) from None


def is_unsigned(config: Mapping[str, Any]) -> bool:
    """Whether a store's options make it send requests without credentials."""
    return config.get("skip_signature") in (True, "true")


def freeze(value: Any) -> Any:
    """A hashable copy of nested dicts/lists, for cache keys."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set):
        return tuple(freeze(v) for v in value)
    return value


def describe(config: Mapping[str, Any], source: str) -> str:
    """How a store authenticates, for debug logs: names of settings only, never values."""
    endpoint = config.get("endpoint") or config.get("base_url")
    return source + (f", endpoint {redact_url(str(endpoint))}" if endpoint else "")


def truthy(value: Any) -> bool:
    """A setting's value read as a boolean (`true`, `1`, `yes`, `on`)."""
    return value is True or str(value).strip().lower() in _TRUE


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of a file, or None when it does not exist: a cache key that notices edits."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@functools.cache
def cloud_vm() -> str | None:
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
