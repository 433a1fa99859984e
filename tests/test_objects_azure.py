"""Object-store tests against Azurite on 127.0.0.1: account keys, SAS tokens, connection strings, public containers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import obstore
import obstore.exceptions
import pytest
from obstore.store import AzureStore, HTTPStore

from mediatable.errors import (
    ConfigError,
    MediaAccessDenied,
    MediaNotFound,
)
from mediatable.io.objects import translate_error
from mediatable.io.urls import parse_url
from objects_support import make_stores, printed, raised, read
from servers.cloud import SEED, AzureServer

CAT = SEED["images/cat.jpg"]


# -- Azure ----------------------------------------------------------------------------------------------


def azure_settings(azure: AzureServer, **extra: Any) -> dict[str, Any]:
    return {f"az://{azure.container}": {"endpoint": azure.endpoint, **extra}}


def test_azure_account_key(azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azure_server.account)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", azure_server.key)
    stores = make_stores(clean_env, azure_settings(azure_server))
    url = f"az://{azure_server.container}/images/cat.jpg"
    assert read(stores, url) == CAT
    store, path = stores.resolve(parse_url(url))
    assert isinstance(store, AzureStore) and path == "images/cat.jpg"
    assert read(stores, f"az://{azure_server.container}/odd names/caf\u00e9 + 1.txt") == b"odd key\n"
    info = stores.head(parse_url(url))
    assert info.size == len(CAT) and info.etag == azure_server.get("images/cat.jpg")[1]["etag"]


def test_azure_wrong_key_is_access_denied(
    azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    wrong = "V3Jvbmcga2V5IGZvciBtZWRpYXRhYmxlIHRlc3Rz" * 2
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azure_server.account)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", wrong)
    stores = make_stores(clean_env, azure_settings(azure_server))
    error = raised(stores.head, parse_url(f"az://{azure_server.container}/images/cat.jpg"))
    assert isinstance(error, MediaAccessDenied) and isinstance(error, PermissionError)
    assert error.status == 403 and not error.is_retryable
    assert wrong not in printed(error)


def test_azure_sas_token(azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    sas = azure_server.container_sas(permissions="rcwl")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azure_server.account)
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", "?" + sas)  # portal-style leading '?' is accepted
    stores = make_stores(clean_env, azure_settings(azure_server))
    url = f"az://{azure_server.container}/docs/readme.txt"
    assert read(stores, url) == SEED["docs/readme.txt"]
    store, _ = stores.resolve(parse_url(url))
    assert store.config["sas_key"] == sas
    missing = raised(stores.head, parse_url(f"az://{azure_server.container}/nope.txt"))
    assert isinstance(missing, MediaNotFound)
    assert "sig=" not in printed(missing) and sas not in printed(missing)


def test_azure_connection_string_and_put_file(
    azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_server.connection_string)
    stores = make_stores(clean_env)  # account, key and endpoint all come from the connection string
    assert read(stores, f"az://{azure_server.container}/images/cat.jpg") == CAT
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"\x00\x00\x00\x18ftypmp42-fake")
    url = parse_url(f"az://{azure_server.container}/out/clip 1.mp4")
    put = stores.put_file(url, source)
    data, headers = azure_server.get("out/clip 1.mp4")
    assert data == source.read_bytes() and headers["content-type"] == "video/mp4"
    assert put.size == len(data) and stores.head(url).etag == headers["etag"]
    assert azure_server.key not in repr(stores)


def test_azure_emulator_flag(azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", azure_server.endpoint.rsplit("/", 1)[0])
    stores = make_stores(clean_env)
    assert read(stores, f"az://{azure_server.container}/docs/readme.txt") == SEED["docs/readme.txt"]
    store, _ = stores.resolve(parse_url(f"az://{azure_server.container}/docs/readme.txt"))
    assert repr(store)  # obstore's repr panics on an emulator store without an account name


def test_azure_public_container_and_blob_url(azure_server: AzureServer, clean_env: Path) -> None:
    # An https://<account>.blob.core.windows.net URL names its account; the endpoint points at Azurite.
    account_url = f"https://{azure_server.account}.blob.core.windows.net/{azure_server.public_container}"
    # The account in the URL, not the connection string's, decides which credentials apply.
    stores = make_stores(clean_env, {account_url: {"endpoint": azure_server.endpoint}})
    url = parse_url(f"{account_url}/images/cat.jpg")
    assert url.kind == "azure"
    store, path = stores.resolve(url)
    assert isinstance(store, AzureStore) and path == "images/cat.jpg"
    assert store.config["skip_signature"] in (True, "true")  # no credentials: anonymous
    assert bytes(obstore.get(store, path).bytes()) == CAT


def test_azure_without_account_is_a_config_error(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match="AZURE_STORAGE_ACCOUNT_NAME"):
        make_stores(clean_env).resolve(parse_url("az://container/x.jpg"))


def sas_token(azure: AzureServer, *, with_plus: bool) -> str:
    """A container SAS whose base64 signature does (or does not) contain '+' (sent as %2B)."""
    for seconds in range(1, 400):  # each expiry second gives another signature; ~half contain '+'
        sas = azure.container_sas(hours=1 + seconds / 3600)
        if ("%2B" in sas.rpartition("sig=")[2]) == with_plus:
            return sas
    pytest.fail("no suitable SAS signature in 400 tries")


def test_signed_url_query_reaches_the_server(azure_server: AzureServer, clean_env: Path) -> None:
    # Azurite verifies SAS signatures: the read only works if the query string arrives intact.
    sas = sas_token(azure_server, with_plus=False)
    url = f"{azure_server.endpoint}/{azure_server.container}/odd%20names/caf%C3%A9%20%2B%201.txt?{sas}"
    stores = make_stores(clean_env)
    store, path = stores.resolve(parse_url(url))
    assert isinstance(store, HTTPStore) and path == ""
    assert read(stores, url) == b"odd key\n"
    tampered = url.replace("sig=", "sig=AAAA")
    error = raised(read, stores, tampered)
    translated = translate_error(error, tampered)
    assert isinstance(translated, MediaAccessDenied) and translated.status == 403
    assert "sig=" not in printed(translated) and sas not in printed(translated)


def test_signed_url_with_encoded_plus(azure_server: AzureServer, clean_env: Path) -> None:
    sas = sas_token(azure_server, with_plus=True)
    url = f"{azure_server.endpoint}/{azure_server.container}/docs/readme.txt?{sas}"
    assert read(make_stores(clean_env), url) == SEED["docs/readme.txt"]


def test_access_denied_to_unsigned_request_says_why(azure_server: AzureServer, clean_env: Path) -> None:
    stores = make_stores(clean_env, azure_settings(azure_server, account_name=azure_server.account))
    url = f"az://{azure_server.container}/images/cat.jpg"  # a private container, and no credentials
    error = stores.translate_error(raised(read, stores, url), url)
    assert isinstance(error, MediaAccessDenied) and error.status == 403
    assert "the request was unsigned: no Azure credentials found" in str(error)
    assert "Authorization header" not in str(error)  # Azurite's words for an unsigned request mislead
    # With credentials there is nothing to add.
    wrong_key = {"account_name": azure_server.account, "account_key": "V3Jvbmcga2V5" * 4}
    signed = make_stores(clean_env, azure_settings(azure_server, **wrong_key))
    error = signed.translate_error(raised(read, signed, url), url)
    assert isinstance(error, MediaAccessDenied) and "unsigned" not in str(error)
