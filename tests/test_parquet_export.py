"""`to_parquet`: round trips read back with pyarrow and compared, media as URLs or bytes, row groups,
local files and the local S3, GCS and Azure servers, bounded memory, nothing left behind when a query fails."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mediagen
import mediatable as mt
from servers.cloud import AzureServer, GCSServer, S3Server, write_service_account
from servers.http import FaultServer


@pytest.fixture
def photos(db_home: Path, http_server: FaultServer, tmp_path: Path) -> tuple[mt.Table, list[bytes]]:
    """Ten rows of every kind of column; the images are JPEGs served over HTTP (their bytes returned too)."""
    folder = f"pq-{tmp_path.name}"
    files = [mediagen.make_jpeg(tmp_path / f"{i}.jpg", size=(20 + i, 10), noise=True).read_bytes() for i in range(10)]
    t = mt.create_table(
        "photos",
        {
            "image": mt.Image,
            "n": mt.Int,
            "x": mt.Float,
            "ok": mt.Bool,
            "name": mt.String,
            "at": mt.Timestamp,
            "meta": mt.Json,
            "vec": mt.Array(mt.Float, (2,)),
        },
    )
    rows = [
        {
            "image": http_server.put(f"{folder}/{i}.jpg", data),
            "n": i if i != 4 else None,
            "x": i / 4,
            "ok": i % 3 == 0,
            "name": f"photo {i}",
            "at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(hours=i),
            "meta": {"i": i, "tags": ["a", "b"][: i % 3]},
            "vec": np.array([i, i + 0.5]),
        }
        for i, data in enumerate(files)
    ]
    t.insert(rows, quiet=True)
    return t, files


def test_round_trip_matches_to_arrow_in_row_groups(
    photos: tuple[mt.Table, list[bytes]], tmp_path: Path, http_server: FaultServer
) -> None:
    t, _ = photos
    query = t.order_by(t.n, asc=False)
    target = tmp_path / "out" / "photos.parquet"  # the folder is created
    report = query.to_parquet(target, row_group_size=4)
    assert (report.rows, report.row_groups) == (10, 3) and report.size == target.stat().st_size
    assert str(report).startswith("10 rows written to file://") and "(3 row groups," in str(report)
    read = pq.read_table(target)
    assert read.equals(query.to_arrow())
    assert pq.ParquetFile(target).metadata.num_row_groups == 3
    types = {f.name: f.type for f in read.schema}
    assert types["n"] == pa.int64() and types["at"] == pa.timestamp("us", tz="UTC")
    assert types["vec"] == pa.list_(pa.float64()) and types["image"] == pa.string()
    assert read.column("image").to_pylist()[0] == http_server.url(f"pq-{tmp_path.name}/9.jpg")
    assert read.column("n").to_pylist()[-1] is None  # None sorts last
    assert [f for f in target.parent.iterdir()] == [target]  # no staging file left


def test_media_as_bytes_and_computed_images(photos: tuple[mt.Table, list[bytes]], tmp_path: Path) -> None:
    t, files = photos
    query = t.order_by(t.name).select(t.name, t.image, small=t.image.resize((8, 4)))
    report = query.to_parquet(tmp_path / "bytes.parquet", media="bytes", row_group_bytes=len(files[0]) * 3)
    read = pq.read_table(tmp_path / "bytes.parquet")
    assert read.schema.field("image").type == pa.binary() and report.row_groups >= 3
    assert read.column("image").to_pylist() == files  # byte for byte, in name order (0..9)
    small = PIL.Image.open(io.BytesIO(read.column("small").to_pylist()[0]))
    assert small.format == "PNG" and small.size == (8, 4)
    with pytest.raises(mt.InvalidArgument, match="computed in memory"):
        query.to_parquet(tmp_path / "urls.parquet")  # a computed image has no URL


Fetched = Callable[[], tuple[bytes, str | None]]
"""Reads the written object back from its server: (bytes, Content-Type)."""


@pytest.fixture(params=["s3", "gs", "azure"])
def bucket_object(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[str, Fetched]:
    """An object URL on a real local server (moto, fake-gcs-server, Azurite) with credentials set, and its reader."""
    key = f"exports-{tmp_path.name}/part-0.parquet"
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        monkeypatch.setenv("AWS_ALLOW_HTTP", "true")

        def from_s3() -> tuple[bytes, str | None]:
            data, response = s3.get(s3.private_bucket, key)
            return data, response["ContentType"]

        return f"s3://{s3.private_bucket}/{key}", from_s3
    if request.param == "gs":
        gcs: GCSServer = request.getfixturevalue("gcs_server")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(write_service_account(tmp_path, gcs.endpoint)))
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)

        def from_gcs() -> tuple[bytes, str | None]:
            blob = gcs.client.bucket(gcs.bucket).get_blob(key)
            return blob.download_as_bytes(), blob.content_type

        return f"gs://{gcs.bucket}/{key}", from_gcs
    azure: AzureServer = request.getfixturevalue("azure_server")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure.connection_string)

    def from_azure() -> tuple[bytes, str | None]:
        data, headers = azure.get(key)
        return data, headers.get("content-type")

    return f"az://{azure.container}/{key}", from_azure


def test_to_object_stores(photos: tuple[mt.Table, list[bytes]], bucket_object: tuple[str, Fetched]) -> None:
    t, files = photos
    url, fetch = bucket_object
    query = t.where(t.x >= 1).order_by(t.x).select(t.n, t.image, t.meta)
    report = query.to_parquet(url, media="bytes", row_group_size=4)
    assert report.url == url and (report.rows, report.row_groups) == (6, 2)
    data, content_type = fetch()
    assert content_type == "application/vnd.apache.parquet" and len(data) == report.size
    read = pq.read_table(io.BytesIO(data))
    expected = query.to_arrow().drop_columns(["image"])
    assert read.drop_columns(["image"]).equals(expected)
    assert read.column("image").to_pylist() == files[4:]


def test_a_failed_value_leaves_no_file(
    db_home: Path, http_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = mt.create_table("gone", {"image": mt.Image, "n": mt.Int})
    good = http_server.put(f"gone-{tmp_path.name}/a.jpg", mediagen.make_jpeg(tmp_path / "a.jpg").read_bytes())
    t.insert([{"image": good, "n": 1}, {"image": http_server.url("nowhere/b.jpg"), "n": 2}], quiet=True)
    target = tmp_path / "gone.parquet"
    with pytest.raises(mt.ComputeError, match="row 2"):
        t.order_by(t.n).select(t.n, w=t.image.width).to_parquet(target)
    assert list(tmp_path.glob("*.parquet*")) == [] and list(tmp_path.glob(".gone*")) == []
    capsys.readouterr()
    t.order_by(t.n).select(t.n, w=t.image.width).to_parquet(target, on_error="ignore")
    assert pq.read_table(target).to_pylist() == [{"n": 1, "w": 160}, {"n": 2, "w": None}]
    assert "1 of 2 values of 'w' failed (1 not found)" in capsys.readouterr().out


def test_empty_results_and_bad_targets(db_home: Path, tmp_path: Path) -> None:
    t = mt.create_table("empty", {"n": mt.Int, "meta": mt.Json})
    report = t.to_parquet(tmp_path / "empty.parquet")
    assert report.rows == 0 and pq.read_table(tmp_path / "empty.parquet").schema.names == ["n", "meta"]
    with pytest.raises(mt.InvalidArgument, match="web servers are read-only"):
        t.to_parquet("https://example.com/out.parquet")
    with pytest.raises(mt.InvalidArgument, match="names no object"):
        t.to_parquet("s3://bucket/folder/")
    with pytest.raises(mt.InvalidArgument, match="media"):
        t.to_parquet(tmp_path / "x.parquet", media="path")


BOUNDED = """
import os, sys, tracemalloc
from pathlib import Path
import PIL.Image
import pyarrow as pa
import mediatable as mt

folder = Path(sys.argv[1])
mt.init(home=folder / "home", quiet=True)
t = mt.create_table("big", {"image": mt.Image, "n": mt.Int})
for i in range(320):  # ~80 KB each: pure noise does not compress
    PIL.Image.frombytes("RGB", (376, 282), os.urandom(376 * 282 * 3)).save(folder / f"{i}.jpg", quality=85)
t.insert([{"image": str(folder / f"{i}.jpg"), "n": i} for i in range(320)], quiet=True)
tracemalloc.start()
for rows in (80, 320):  # a quarter of the rows, then all of them
    tracemalloc.reset_peak()
    report = t.order_by(t.n).limit(rows).to_parquet(folder / "big.parquet", media="bytes", row_group_bytes=2 * 1024**2)
    python_peak = tracemalloc.get_traced_memory()[1]
    print(report.size, report.row_groups, python_peak, pa.default_memory_pool().max_memory())
"""


def test_media_bytes_stream_in_row_groups_with_bounded_memory(clean_env: Path, tmp_path: Path) -> None:
    # In a process of its own: Arrow's peak allocation only ever grows, so it is read after each export.
    result = subprocess.run(
        [sys.executable, "-c", BOUNDED, str(tmp_path)], capture_output=True, text=True, timeout=240, check=True
    )
    small, large = [list(map(int, line.split())) for line in result.stdout.splitlines()[-2:]]
    size, row_groups, python_peak, arrow_peak = large
    assert size > 20 * 1024**2 and size > 3.5 * small[0] and row_groups >= 10  # ~80 KB a file, ~2 MiB a group
    # Memory follows the row group, not the result: four times the rows cost no more, and far less than the file.
    assert arrow_peak < small[3] + 2 * 1024**2 and arrow_peak < size / 2, (small, large)
    assert python_peak < small[2] + 2 * 1024**2 and python_peak < 8 * 1024**2, (small, large)


@pytest.fixture
def wide(db_home: Path) -> mt.Table:
    """About 18 MiB of incompressible text in 2,400 rows: an export larger than a few upload parts."""
    t = mt.create_table("wide", {"n": mt.Int, "text": mt.String})
    rng = np.random.default_rng(0)
    t.insert([{"n": i, "text": rng.bytes(4096).hex()} for i in range(2400)], quiet=True)
    return t


@pytest.fixture(params=["s3", "azure"])
def streamed_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, Any]:
    """(URL prefix, server) for the stores an export streams to, credentials set."""
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        for name, value in (("AWS_ACCESS_KEY_ID", s3.access_key_id), ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)):
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
        return f"s3://{s3.private_bucket}/wide-{tmp_path.name}", s3
    azure: AzureServer = request.getfixturevalue("azure_server")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure.connection_string)
    return f"az://{azure.container}/wide-{tmp_path.name}", azure


def uploaded(server: Any, url: str) -> tuple[bytes, int] | None:
    """The object's bytes and the number of parts (S3) or blocks (Azure) it was uploaded in; None if absent."""
    bucket, key = url.split("/", 3)[2:]
    if isinstance(server, S3Server):
        try:
            data, response = server.get(bucket, key)
        except server.client.exceptions.NoSuchKey:
            return None
        etag = response["ETag"].strip('"')  # a multipart upload's ETag ends with -<parts>
        return data, int(etag.rpartition("-")[2]) if "-" in etag else 1
    status, data, _ = server.request("GET", f"{bucket}/{key}")
    if status == 404:  # blocks staged by an aborted upload are no blob
        return None
    _, blocks, _ = server.request("GET", f"{bucket}/{key}", {"comp": "blocklist", "blocklisttype": "committed"})
    return data, blocks.count(b"<Block>")


def test_large_exports_stream_to_the_bucket_in_parts(
    wide: mt.Table, streamed_store: tuple[str, Any], tmp_path: Path
) -> None:
    prefix, server = streamed_store
    home = wide._session.settings.home

    @mt.udf
    def staged(n: int) -> int:
        """Files staged in the home while the export runs (checked every 500 rows)."""
        return len(list(home.glob(".export*"))) if n % 500 == 0 else 0

    url = f"{prefix}/all.parquet"
    query = wide.order_by(wide.n).select(wide.n, wide.text, staged=staged(wide.n))
    report = query.to_parquet(url, row_group_bytes=2 * 1024**2)
    data, parts = uploaded(server, url) or (b"", 0)
    assert len(data) == report.size > 16 * 1024**2 and report.row_groups >= 3
    assert parts >= 2  # uploaded part by part (8 MiB)
    read = pq.read_table(io.BytesIO(data))
    assert read.drop_columns(["staged"]).equals(wide.order_by(wide.n).to_arrow())
    assert set(read.column("staged").to_pylist()) == {0}  # streamed: no local copy while it was written


def test_a_failed_streamed_export_leaves_no_object(wide: mt.Table, streamed_store: tuple[str, Any]) -> None:
    prefix, server = streamed_store

    @mt.udf
    def fails_late(n: int) -> int:
        if n == 2300:
            raise ValueError("row 2300 is bad")
        return n

    url = f"{prefix}/failed.parquet"
    with pytest.raises(mt.ComputeError, match="row 2300 is bad"):  # after more than one part went up
        wide.order_by(wide.n).select(wide.n, wide.text, m=fails_late(wide.n)).to_parquet(url, row_group_bytes=2**20)
    assert uploaded(server, url) is None
    if isinstance(server, S3Server):
        bucket = url.split("/")[2]
        assert not server.client.list_multipart_uploads(Bucket=bucket).get("Uploads")  # aborted, not left behind
