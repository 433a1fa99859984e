"""One cache entry per object, whatever the signature (issue 8): presigned URLs from the real emulators.

Two presigned URLs of one object (signed at different times or for different expirations) differ
only in their signing parameters; the file cache stores the object once and still downloads with
the full signed URL, which the server checks (Azurite verifies SAS signatures).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from mediatable.config import Settings, load_settings
from mediatable.errors import MediaAccessDenied
from mediatable.io.cache import FileCache
from mediatable.io.objects import ObjectStores
from mediatable.io.presign import Presigner
from servers.cloud import SEED, AzureServer, S3Server


def _settings(home: Path) -> Settings:
    return load_settings(home, environ={}, progress=False, retry_backoff=0.01, max_retries=1)


def _presigner(home: Path, buckets: dict[str, dict[str, str]] | None = None) -> Presigner:
    return Presigner(ObjectStores(Settings(home=home, buckets=buckets or {}), instance_credentials=False))


def test_s3_presigned_urls_of_one_object_are_one_entry(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_REGION", s3_server.region)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    url = f"s3://{s3_server.private_bucket}/images/cat.jpg"
    signer = _presigner(clean_env)
    (first,) = signer.presign([url], 300)
    (second,) = signer.presign([url], 600)
    assert isinstance(first, str) and isinstance(second, str) and first != second
    with FileCache(_settings(clean_env)) as cache, cache.lease() as lease:
        paths = {lease.get(first), lease.get(second)}
        assert len(paths) == 1 and paths.pop().read_bytes() == SEED["images/cat.jpg"]
        info = cache.info()
        assert (info.entries, info.misses) == (1, 1)


def test_azure_sas_urls_of_one_object_are_one_entry_and_downloads_send_the_signature(
    azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_server.connection_string)
    url = f"az://{azure_server.container}/images/cat.jpg"
    signer = _presigner(clean_env)
    (first,) = signer.presign([url], 300)
    (second,) = signer.presign([url], 900)
    assert isinstance(first, str) and isinstance(second, str) and first != second
    sig = dict(parse_qsl(urlsplit(first).query))["sig"]
    other_sig = ("B" if sig[0] == "A" else "A") + sig[1:]  # a different first character, always
    encoded = sig.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D")
    tampered = first.replace(encoded, other_sig.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D"))
    assert tampered != first
    with FileCache(_settings(clean_env)) as cache, cache.lease() as lease:
        with pytest.raises(MediaAccessDenied):
            lease.get(tampered)  # nothing cached yet: the download carries the (wrong) signature
        path = lease.get(first)
        assert path.read_bytes() == SEED["images/cat.jpg"]
        assert lease.get(second) == path
        assert (cache.info().entries, cache.info().misses) == (1, 2)
