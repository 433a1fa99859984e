"""Generated media written to destinations (io/destinations.py, io/uploads.py) on the real local servers.

Every destination kind is exercised end to end: `add_computed_column(..., destination=...)` uploads
content-addressed objects with their Content-Type, later inserts upload too, and reading the column
back costs no download (the cache's miss counter stays put and the store's endpoint is unreachable).
"""

from __future__ import annotations

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mediatable as mt
from mediagen import make_jpeg
from servers.cloud import AzureServer, GCSServer, S3Server, write_service_account
from servers.http import FaultServer

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def images(http_server: FaultServer, tmp_path: Path, colors: list[tuple[int, int, int]]) -> list[str]:
    urls = []
    for i, color in enumerate(colors):
        data = make_jpeg(tmp_path / f"src{i}.jpg", size=(64, 48), color=color).read_bytes()
        urls.append(http_server.put(f"dest/src{i}-{color[0]}.jpg", data))
    return urls


class Bucket:
    """One destination under test: its URL, how to list and read what landed there, how to cut it off."""

    def __init__(
        self,
        url: str,
        listing: Callable[[], dict[str, tuple[bytes, str | None]]],
        cut_off: Callable[[pytest.MonkeyPatch], Callable[[], None]],
    ) -> None:
        self.url, self.listing, self.cut_off = url, listing, cut_off


def swap(name: str, value: str) -> Callable[[pytest.MonkeyPatch], Callable[[], None]]:
    """Set env `name` to `value` for a while: returns what sets it back."""

    def cut_off(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
        old = os.environ[name]
        monkeypatch.setenv(name, value)
        return lambda: monkeypatch.setenv(name, old)

    return cut_off


@pytest.fixture(params=["s3", "gs", "azure", "local"])
def bucket(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Bucket:
    kind = request.param
    if kind == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
        monkeypatch.setenv("AWS_REGION", s3.region)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        prefix = f"thumbs-{tmp_path.name}/"

        def s3_listing() -> dict[str, tuple[bytes, str | None]]:
            found = s3.client.list_objects_v2(Bucket=s3.private_bucket, Prefix=prefix).get("Contents", [])
            out = {}
            for item in found:
                data, meta = s3.get(s3.private_bucket, item["Key"])
                out[item["Key"][len(prefix) :]] = (data, meta["ContentType"])
            return out

        return Bucket(f"s3://{s3.private_bucket}/{prefix}", s3_listing, swap("AWS_ENDPOINT_URL", "http://127.0.0.1:9"))
    if kind == "gs":
        gcs: GCSServer = request.getfixturevalue("gcs_server")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(write_service_account(tmp_path, gcs.endpoint)))
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
        prefix = f"thumbs-{tmp_path.name}/"

        def gcs_listing() -> dict[str, tuple[bytes, str | None]]:
            blobs = gcs.client.list_blobs(gcs.bucket, prefix=prefix)
            return {b.name[len(prefix) :]: (b.download_as_bytes(), b.content_type) for b in blobs}

        return Bucket(f"gs://{gcs.bucket}/{prefix}", gcs_listing, swap("STORAGE_EMULATOR_HOST", "127.0.0.1:9"))
    if kind == "azure":
        azure: AzureServer = request.getfixturevalue("azure_server")
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure.connection_string)
        prefix = f"thumbs-{tmp_path.name}/"

        def azure_listing() -> dict[str, tuple[bytes, str | None]]:
            query = {"restype": "container", "comp": "list", "prefix": prefix}
            status, body, _ = azure.request("GET", azure.container, query)
            assert status == 200, body
            names = [e.text or "" for e in ET.fromstring(body).iter("Name")]
            out = {}
            for name in names:
                data, headers = azure.get(name)
                out[name[len(prefix) :]] = (data, headers.get("content-type"))
            return out

        dead = azure.connection_string.replace(azure.endpoint.rsplit("/", 1)[0], "http://127.0.0.1:9")
        return Bucket(f"az://{azure.container}/{prefix}", azure_listing, swap("AZURE_STORAGE_CONNECTION_STRING", dead))
    folder = tmp_path / "generated"

    def local_listing() -> dict[str, tuple[bytes, str | None]]:
        return {p.name: (p.read_bytes(), None) for p in folder.iterdir()} if folder.exists() else {}

    return Bucket(str(folder), local_listing, lambda mp: lambda: None)


def test_destination_uploads_content_addressed_objects_and_reads_back_without_a_download(
    bucket: Bucket, http_server: FaultServer, clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = mt.init(home=clean_env, quiet=True)
    t = mt.create_table("pics", {"image": mt.Image})
    sources = images(http_server, tmp_path, COLORS)
    t.insert([{"image": url} for url in [*sources, sources[0]]], quiet=True)  # the last row repeats the first
    status = t.add_computed_column(thumb=t.image.resize((32, 24)), destination=bucket.url)
    assert (status.num_computed_values, status.num_excs) == (4, 0)

    urls = t.select(t.thumb.fileurl).collect()["thumb_fileurl"]
    listing = bucket.listing()
    assert len(listing) == 3 and urls[0] == urls[3]  # identical outputs are stored once
    remote = bucket.url.startswith(("s3://", "gs://", "az://"))
    for url in urls:
        folder, name = url.rsplit("/", 1)
        assert folder + "/" == (bucket.url if remote else f"file://{bucket.url}/")
        assert re.fullmatch(r"[0-9a-f]{64}\.jpg", name), url
        data, content_type = listing[name]
        assert hashlib.sha256(data).hexdigest() == name[:-4]  # named by their content
        assert content_type == ("image/jpeg" if remote else None)

    # Reading the column back downloads nothing: the uploads entered the file cache under their URLs.
    restore = bucket.cut_off(monkeypatch)  # the store is unreachable from here on
    misses = session.cache.info().misses
    assert t.select(w=t.thumb.width).collect()["w"] == [32, 32, 32, 32]
    assert session.cache.info().misses == misses
    restore()

    # Rows inserted later upload on insert.
    (later,) = images(http_server, tmp_path, [(120, 120, 20)])
    t.insert([{"image": later}], quiet=True)
    assert len(bucket.listing()) == 4
    assert t.select(t.thumb.errortype).collect()["thumb_errortype"] == [None] * 5

    # Dropping the column (or the table) leaves the objects where they are.
    t.drop_column("thumb")
    mt.drop_table("pics")
    assert len(bucket.listing()) == 4


def test_later_uploads_that_fail_are_that_cells_error(
    s3_server: S3Server, http_server: FaultServer, clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    s3_server.client.create_bucket(Bucket="mt-short-lived")
    mt.init(home=clean_env, quiet=True)
    t = mt.create_table("pics", {"image": mt.Image})
    t.add_computed_column(thumb=t.image.resize((16, 12)), destination="s3://mt-short-lived/t/", quiet=True)
    s3_server.client.delete_bucket(Bucket="mt-short-lived")  # empty: the probe cleaned up after itself
    good, other = images(http_server, tmp_path, COLORS[:2])
    status = t.insert([{"image": good}, {"image": other}], quiet=True)
    assert status.num_excs == 2
    errors = t.select(t.thumb.errortype, t.thumb.errormsg).collect()
    assert errors["thumb_errortype"] == ["MediaNotFound", "MediaNotFound"]
    assert all(m.startswith("upload of thumb: not found: s3://mt-short-lived/t/") for m in errors["thumb_errormsg"])
    with pytest.raises(mt.ComputeError, match="upload of thumb"):
        t.insert([{"image": good}], on_error="abort", quiet=True)
    assert t.count() == 2  # the aborted insert stored nothing


def test_bad_destinations_fail_before_any_work(
    s3_server: S3Server, azure_server: AzureServer, clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    mt.init(home=clean_env, quiet=True)
    t = mt.create_table("pics", {"image": mt.Image, "n": mt.Int})
    thumb = t.image.resize((8, 8))
    cases: list[tuple[dict[str, Any], type[BaseException], list[str]]] = [
        ({"destination": "ftp://host/dir/"}, mt.InvalidArgument, ["'thumb'", "ftp://host/dir/"]),
        ({"destination": "https://example.com/up/"}, mt.InvalidArgument, ["'thumb'", "read-only"]),
        (
            {"destination": "s3://mt-no-such-bucket/t/"},
            mt.MediaNotFound,
            ["'thumb'", "bucket 'mt-no-such-bucket' does not exist", "AWS_ACCESS_KEY_ID"],
        ),
        ({"destination": "/dev/null/sub"}, mt.MediaAccessDenied, ["'thumb'", "cannot create the folder"]),
    ]
    for kwargs, error, words in cases:
        with pytest.raises(error) as raised:
            t.add_computed_column(thumb=thumb, quiet=True, **kwargs)
        for word in words:
            assert word in str(raised.value), (kwargs, str(raised.value))
    with pytest.raises(mt.InvalidArgument, match="'double' is Int"):
        t.add_computed_column(double=t.n * 2, destination=str(tmp_path / "out"))
    # A read-only SAS: the container exists but refuses the write; the message says with what.
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azure_server.account)
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", azure_server.container_sas(permissions="rl"))
    monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", azure_server.endpoint)
    with pytest.raises(mt.MediaAccessDenied) as denied:
        t.add_computed_column(thumb=thumb, destination=f"az://{azure_server.container}/ro/")
    assert "does not accept writes" in str(denied.value) and "AZURE_STORAGE_SAS_TOKEN" in str(denied.value)
    assert "sig=" not in str(denied.value)
    # GCS without credentials cannot write.
    with pytest.raises(mt.MediaAccessDenied, match="GOOGLE_APPLICATION_CREDENTIALS"):
        t.add_computed_column(thumb=thumb, destination="gs://some-bucket/t/")
    assert t.columns == ["image", "n"]  # nothing was added by any of these


def test_output_media_dest_is_the_default_and_uploads_show_progress(
    http_server: FaultServer,
    clean_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "default-dest"
    monkeypatch.setenv("MEDIATABLE_OUTPUT_MEDIA_DEST", str(folder))
    mt.init(home=clean_env, quiet=True, progress=True)
    t = mt.create_table("pics", {"image": mt.Image})
    t.insert([{"image": url} for url in images(http_server, tmp_path, COLORS)], quiet=True)
    capsys.readouterr()
    t.add_computed_column(thumb=t.image.resize((8, 6)), quiet=True)
    assert "Uploading to file://" in capsys.readouterr().err
    urls = t.select(t.thumb.fileurl).collect()["thumb_fileurl"]
    assert all(url.startswith(f"file://{folder}/") for url in urls)
    assert sorted(p.name for p in folder.iterdir()) == sorted(url.rsplit("/", 1)[1] for url in urls)
    assert "default-dest" in mt.get_table("pics")._meta.own_columns["thumb"].destination


def test_output_media_dest_from_config_toml_is_checked_like_an_argument(
    http_server: FaultServer, clean_env: Path, tmp_path: Path
) -> None:
    clean_env.mkdir()
    (clean_env / "config.toml").write_text('output_media_dest = "ftp://nowhere/x/"\n')
    mt.init(home=clean_env, quiet=True)
    t = mt.create_table("pics", {"image": mt.Image, "n": mt.Int})
    t.add_computed_column(double=t.n * 2, quiet=True)  # not media: the default does not apply
    with pytest.raises(mt.InvalidArgument, match="column 'thumb': unsupported destination ftp://nowhere/x/"):
        t.add_computed_column(thumb=t.image.resize((8, 6)), quiet=True)
    folder = tmp_path / "from-toml"
    (clean_env / "config.toml").write_text(f'output_media_dest = "{folder}"\n')
    mt.init(home=clean_env, quiet=True)
    t = mt.get_table("pics")
    t.insert([{"image": images(http_server, tmp_path, COLORS[:1])[0], "n": 1}], quiet=True)
    t.add_computed_column(thumb=t.image.resize((8, 6)), quiet=True)
    (url,) = t.select(t.thumb.fileurl).collect()["thumb_fileurl"]
    assert url.startswith(f"file://{folder}/") and len(list(folder.iterdir())) == 1
