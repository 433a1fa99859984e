"""`mt.list_objects`: bucket and folder listings as rows, against moto S3, fake-gcs-server, Azurite and a folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import mediatable as mt
from mediatable.importers.listing import ObjectListing, _object_url
from mediatable.io.urls import parse_url
from servers.cloud import AzureServer, GCSServer, S3Server
from servers.http import FaultServer

FILES = {"photos/a.jpg": b"aaa", "photos/2024/b.jpg": b"bbbb", "photos/notes.txt": b"n", "other/c.jpg": b"c"}


@pytest.fixture
def session(clean_env: Path) -> mt.Session:
    return mt.init(home=clean_env, quiet=True)


def urls(rows: object) -> list[str]:
    return sorted(row["url"] for row in rows)  # type: ignore[attr-defined]


def check_rows(rows: list[dict[str, object]], base: str) -> None:
    """Rows of the jpgs under photos/, with their sizes and metadata."""
    by_url = {row["url"]: row for row in rows}
    assert sorted(by_url) == [f"{base}photos/2024/b.jpg", f"{base}photos/a.jpg"]
    assert by_url[f"{base}photos/a.jpg"]["size"] == 3 and by_url[f"{base}photos/2024/b.jpg"]["size"] == 4
    for row in rows:
        assert set(row) == {"url", "size", "etag", "last_modified"}
        assert isinstance(row["last_modified"], dt.datetime) and row["last_modified"].tzinfo is not None
        assert row["etag"]


def test_local_folder(session: mt.Session, tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    for key, data in FILES.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    base = f"file://{root}/"
    check_rows(list(mt.list_objects(root / "photos", pattern="*.jpg")), base)
    assert urls(mt.list_objects(f"{base}photos/")) == [
        f"{base}photos/2024/b.jpg",
        f"{base}photos/a.jpg",
        f"{base}photos/notes.txt",
    ]
    with pytest.raises(mt.MediaNotFound, match="no such folder"):
        list(mt.list_objects(root / "nope"))


def test_s3_listing_with_credentials_and_anonymous(
    session: mt.Session, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = "mt-listing"
    s3_server.client.create_bucket(Bucket=bucket, ACL="public-read")
    for key, data in FILES.items():
        s3_server.client.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_REGION", s3_server.region)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    # a public bucket, listed without credentials
    check_rows(list(mt.list_objects(f"s3://{bucket}/photos/", pattern="*.jpg")), f"s3://{bucket}/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    check_rows(list(mt.list_objects(f"s3://{bucket}/photos", pattern="*.jpg")), f"s3://{bucket}/")
    assert len(list(mt.list_objects(f"s3://{bucket}/"))) == len(FILES)
    with pytest.raises(mt.MediaNotFound, match="s3://mt-no-such-bucket"):
        list(mt.list_objects("s3://mt-no-such-bucket/x/"))


def test_listing_is_streamed_page_by_page(
    session: mt.Session, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = "mt-pages"
    s3_server.client.create_bucket(Bucket=bucket)
    for i in range(7):
        s3_server.put(bucket, f"p/{i}.jpg", b"x" * i)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    listing = ObjectListing(session.stores, f"s3://{bucket}/p/", page_size=3)
    pages = listing.pages()
    first = next(pages)  # one request's worth, before the rest is asked for
    assert len(first) == 3
    assert [len(page) for page in pages] == [3, 1]
    # the listing goes straight into a table, and again (each iteration lists anew)
    t = mt.create_table("objects", source=listing, schema_overrides={"url": mt.Image})
    assert t.count() == 7 and t.where(t.size == 6).count() == 1
    images = mt.create_table("images", {"image": mt.Image, "bytes": mt.Int})
    images.insert(mt.list_objects(f"s3://{bucket}/p/", columns={"url": "image", "size": "bytes"}), quiet=True)
    assert images.order_by(images.bytes).select(images.bytes).collect()["bytes"] == list(range(7))


def test_gcs_listing(session: mt.Session, gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, data in FILES.items():
        gcs_server.put(key, data, bucket=gcs_server.bucket)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint.removeprefix("http://"))
    check_rows(list(mt.list_objects(f"gs://{gcs_server.bucket}/photos/", "*.jpg")), f"gs://{gcs_server.bucket}/")


def test_azure_listing(session: mt.Session, azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, data in FILES.items():
        azure_server.put(key, data)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_server.connection_string)
    base = f"az://{azure_server.container}/"
    check_rows(list(mt.list_objects(f"{base}photos/", "*.jpg")), base)
    # the rows read back through the cache: the listing's URLs are the objects' URLs
    t = mt.create_table(
        "blobs", source=mt.list_objects(f"{base}photos/", "*.txt"), schema_overrides={"url": mt.Document}
    )
    assert Path(t.select(t.url.localpath).collect()["url_localpath"][0]).read_bytes() == b"n"


def test_http_cannot_be_listed_and_columns_are_checked(session: mt.Session, http_server: FaultServer) -> None:
    with pytest.raises(mt.UnsupportedScheme, match="web servers have no listing"):
        mt.list_objects(http_server.url("images/"))
    with pytest.raises(mt.InvalidArgument, match="'path'"):
        mt.list_objects("s3://bucket/", columns=["url", "path"])


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("s3://b/photos/", "photos/a b.jpg", "s3://b/photos/a%20b.jpg"),
        ("s3://b", "x/y.jpg", "s3://b/x/y.jpg"),
        ("az://c/p", "p/q.mp4", "az://c/p/q.mp4"),
        ("https://acct.blob.core.windows.net/c/p/", "p/q.mp4", "https://acct.blob.core.windows.net/c/p/q.mp4"),
        ("abfss://c@acct.dfs.core.windows.net/p/", "p/q.mp4", "abfss://c@acct.dfs.core.windows.net/p/q.mp4"),
        ("/data/media", "data/media/caf\u00e9.jpg", "file:///data/media/caf%C3%A9.jpg"),
    ],
)
def test_listed_urls_are_spelled_like_the_prefix(prefix: str, path: str, expected: str) -> None:
    url = _object_url(parse_url(prefix), path)
    assert url == expected
    assert parse_url(url).url == expected  # already normalized: the cache key of the object
