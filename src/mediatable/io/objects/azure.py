"""Azure Blob stores: the Azure credential chain, connection strings, Azurite.

Order, first match wins: the container's `[buckets."az://…"]` keys; `AZURE_STORAGE_CONNECTION_STRING`
(its parts overridden by `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
`AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_ENDPOINT`); `AZURE_STORAGE_USE_EMULATOR` (Azurite's
well-known account); obstore's other `AZURE_*` credentials (client secret, federated token, Azure
CLI); the managed identity on an Azure VM; else unsigned requests (public containers).

An `https://<account>.blob.core.windows.net/` URL names its account: the environment's key or SAS
applies only when it is for that account.
"""

from __future__ import annotations

import os
from typing import Any

from obstore.store import AzureStore

from mediatable.errors import MediaConfigError
from mediatable.io.objects.options import StoreContext, StorePlan, bucket_names, plan, truthy
from mediatable.io.urls import MediaUrl, redact_url

__all__ = ["AZURITE_ACCOUNT", "azure_plan", "parse_connection_string"]

AZURITE_ACCOUNT = "devstoreaccount1"

_ENV_OPTIONS = (
    ("AZURE_STORAGE_ACCOUNT_NAME", "account_name"),
    ("AZURE_STORAGE_ACCOUNT_KEY", "account_key"),
    ("AZURE_STORAGE_ACCESS_KEY", "account_key"),
    ("AZURE_STORAGE_SAS_TOKEN", "sas_key"),
    ("AZURE_STORAGE_SAS_KEY", "sas_key"),
    ("AZURE_STORAGE_ENDPOINT", "endpoint"),
)
_ENV_CREDENTIALS = (
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
)


def azure_plan(url: MediaUrl, context: StoreContext) -> StorePlan:
    """How to build the store of `url`'s container with the credentials in effect now.

    Raises:
        MediaConfigError: no storage account is known for the URL.
    """
    env = os.environ
    container = url.bucket
    options = context.bucket_options(*bucket_names(url))

    # The environment's account: connection string first, single variables override its parts.
    config = parse_connection_string(env.get("AZURE_STORAGE_CONNECTION_STRING", ""))
    source = "AZURE_STORAGE_CONNECTION_STRING" if config else ""
    for var, name in _ENV_OPTIONS:
        if env.get(var):
            config[name] = env[var]
            if name in ("account_key", "sas_key"):
                source = var
    if truthy(env.get("AZURE_STORAGE_USE_EMULATOR", "")):
        config["use_emulator"] = True
        source = source or "AZURE_STORAGE_USE_EMULATOR"
    if config.get("use_emulator"):
        config.setdefault("account_name", AZURITE_ACCOUNT)
    if url.account and config.get("account_name") not in (None, url.account):
        # The URL names another account: the environment's key or SAS would be wrong for it.
        config, source = {}, ""
    if url.account:
        config["account_name"] = url.account
    if "sas_key" in config:
        config["sas_key"] = str(config["sas_key"]).lstrip("?")
    signed = any(k in config for k in ("account_key", "sas_key", "use_emulator"))
    if options.has_credentials:
        signed, source = True, f'keys in [buckets."{options.name}"]'
    if not signed:
        found = [name for name in _ENV_CREDENTIALS if env.get(name)]
        if truthy(env.get("AZURE_USE_AZURE_CLI", "")):
            found.append("AZURE_USE_AZURE_CLI")
        if context.use_instance_credentials("azure"):
            found.append("the Azure managed identity")
        if found:
            signed, source = True, found[0]
    if options.anonymous is True or (options.anonymous is None and not signed):
        config = {k: v for k, v in config.items() if k in ("account_name", "endpoint", "use_emulator")}
        config["skip_signature"] = True
        source = (
            f'anonymous = true in [buckets."{options.name}"]'
            if options.anonymous
            else "no Azure credentials found (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, "
            "AZURE_STORAGE_CONNECTION_STRING)"
        )
    config.update(options.store)
    if truthy(config.get("use_emulator", "")):
        # Azurite's account; without a name obstore's repr of the store panics.
        config.setdefault("account_name", AZURITE_ACCOUNT)
    if not config.get("account_name"):
        raise MediaConfigError(
            f"no Azure storage account for {redact_url(url.url)}: set AZURE_STORAGE_ACCOUNT_NAME or "
            f"AZURE_STORAGE_CONNECTION_STRING, use an https://<account>.blob.core.windows.net/ URL, "
            f'or set account_name in [buckets."az://{container}"]',
            url=redact_url(url.url),
        )
    endpoint = str(config.get("endpoint", ""))
    allow_http = endpoint.startswith("http://") or bool(config.get("use_emulator"))
    client = context.client(options.client, allow_http=allow_http)
    return plan(AzureStore, "Azure", "az", container, config, client, source=source)


def parse_connection_string(text: str) -> dict[str, Any]:
    """obstore options from an Azure connection string (`AccountName=...;AccountKey=...;...`).

    Examples:
        >>> parse_connection_string("AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net")
        {'account_name': 'acct', 'account_key': 'a2V5', 'endpoint': 'https://acct.blob.core.windows.net'}
    """
    parts: dict[str, str] = {}
    for item in text.split(";"):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name.strip().lower()] = value.strip()
    config: dict[str, Any] = {}
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        config["use_emulator"] = True
        config["account_name"] = AZURITE_ACCOUNT
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
