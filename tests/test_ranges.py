"""Ranged reads (io/ranges.py, io/cache/ranged.py, io/cache/blocks.py) against the real local servers.

Large objects are opened as seekable files whose blocks are cache entries. Test media stay small
(a few MiB) with small settings: 64 KiB blocks, objects of 256 KiB and more read by ranges. Every
count of requests comes from the server's own log; cross-process behaviour runs real processes.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import random
import signal
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest

import mediatable as mt
from mediagen import make_noise_mp4, make_png
from mediatable.config import Settings, load_settings
from mediatable.errors import MediaChanged
from mediatable.functions import audio, video
from mediatable.io.cache import FileCache, RemoteObject
from mediatable.io.cache.blocks import block_key
from mediatable.io.cache.entries import digest, file_name
from mediatable.io.cache.index import CacheIndex
from mediatable.iterators import FrameIterator
from servers.cloud import AzureServer, GCSServer, S3Server
from servers.http import FaultServer

pytestmark = pytest.mark.usefixtures("private_tempdir")

KB = 1024
BLOCK = 64 * KB
MIN_RANGED = 256 * KB


def _overrides(**extra: Any) -> dict[str, Any]:
    return {"block_size": BLOCK, "min_ranged_size": MIN_RANGED, "retry_backoff": 0.01, "progress": False, **extra}


def _settings(home: Path, **extra: Any) -> Settings:
    return load_settings(home, environ={}, **_overrides(**extra))


@pytest.fixture
def home(clean_env: Path) -> Path:
    return clean_env


def _ranges(server: FaultServer, path: str) -> list[str | None]:
    return [r.range for r in server.requests(path) if r.method == "GET"]


def _block_ranges(indices: list[int], size: int) -> list[str]:
    return [f"bytes={i * BLOCK}-{min((i + 1) * BLOCK, size) - 1}" for i in indices]


def _block_path(cache_dir: Path, url: str, obj: RemoteObject, index: int) -> Path:
    return cache_dir / file_name(digest(block_key(url, obj.version, BLOCK, index)), ".blk")


def _damage(block: Path, at: int) -> bytes:
    """Flip one byte of a block file behind the cache's back (same size: only the checksum can tell)."""
    raw = bytearray(block.read_bytes())
    raw[at] ^= 0xFF
    block.write_bytes(bytes(raw))
    return bytes(raw)


def _check_consistent(cache_dir: Path) -> int:
    """Index and files agree, nothing reserved or half-written is left; returns the entry count.

    (test_cache's check also wants a content hash on every entry: blocks carry a CRC32C instead.)
    """
    db = sqlite3.connect(cache_dir / "index.db")
    try:
        rows = db.execute("SELECT path, size FROM entries").fetchall()
        totals = db.execute("SELECT entries, bytes FROM totals").fetchone()
    finally:
        db.close()
    files = sorted(f"{p.parent.name}/{p.name}" for p in cache_dir.glob("??/*"))
    assert files == sorted(path for path, _ in rows)
    for path, size in rows:
        assert (cache_dir / path).stat().st_size == size
    assert totals == (len(rows), sum(size for _, size in rows))
    assert not list((cache_dir / "tmp").iterdir())
    return len(rows)


# -- the seekable file ---------------------------------------------------------------------------


def test_random_reads_match_the_object_and_fetch_each_block_once(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(20 * BLOCK + 123)
    url = http_server.put("ranges/random.bin", data)
    rng = random.Random(7)
    touched: set[int] = set()
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject) and obj.size == len(data)
        touched.add(0)  # opening fetched the first block
        with obj.open() as file:
            assert file.seekable() and file.readable() and not file.writable() and file.name == url
            for _ in range(12):
                start = rng.randrange(len(data) + 10)
                length = rng.randrange(BLOCK)
                assert file.seek(start) == start
                got = file.read(length)
                assert got == data[start : start + length] and file.tell() == start + len(got)
                if got:
                    touched.update(range(start // BLOCK, (start + len(got) - 1) // BLOCK + 1))
            assert file.seek(-5, os.SEEK_END) == len(data) - 5 and file.read() == data[-5:]
        touched.add(20)
        assert set(_ranges(http_server, "ranges/random.bin")) >= set(_block_ranges(sorted(touched), len(data)))
        assert len(touched) < 21  # the reads above did not need every block
        with obj.open() as again:  # a second file of the same object: everything from the cache
            assert again.read() == data
    ranges = _ranges(http_server, "ranges/random.bin")
    assert len(ranges) == len(set(ranges))  # no block twice
    assert set(ranges) == set(_block_ranges(list(range(21)), len(data)))  # read() fetched the rest


def test_sequential_reads_fetch_ahead(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(16 * BLOCK)
    url = http_server.put("ranges/seq.bin", data)
    http_server.set_fault("ranges/seq.bin", latency=0.05)
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)
        with obj.open() as file:
            chunks = []
            while chunk := file.read(32 * KB):
                chunks.append(chunk)
        assert b"".join(chunks) == data
    assert len(_ranges(http_server, "ranges/seq.bin")) == 16
    # with read-ahead, later blocks are asked for while the reader waits for one: requests overlap
    # (one block at a time, each answered after 50 ms, would never have two in flight)
    assert http_server.peak_concurrency >= 2


def test_size_decides_between_whole_file_and_ranges(http_server: FaultServer, home: Path) -> None:
    tiny, small, large = os.urandom(30 * KB), os.urandom(200 * KB), os.urandom(10 * BLOCK)
    urls = {name: http_server.put(f"ranges/{name}.bin", data) for name, data in [("tiny", tiny), ("small", small)]}
    urls["large"] = http_server.put("ranges/large.bin", large)
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        got = lease.get_ranged(urls["tiny"])
        assert isinstance(got, Path) and got.read_bytes() == tiny
        assert _ranges(http_server, "ranges/tiny.bin") == [f"bytes=0-{BLOCK - 1}"]  # one answer: the whole object
        got = lease.get_ranged(urls["small"])
        assert isinstance(got, Path) and got.read_bytes() == small
        assert _ranges(http_server, "ranges/small.bin") == [f"bytes=0-{BLOCK - 1}", f"bytes={BLOCK}-{len(small) - 1}"]
        got = lease.get_ranged(urls["large"])
        assert isinstance(got, RemoteObject) and got.size == len(large)
        assert _ranges(http_server, "ranges/large.bin") == [f"bytes=0-{BLOCK - 1}"]
    http_server.reset()
    with FileCache(_settings(home)) as cache, cache.lease() as lease:  # another cache object, same folder
        again = lease.get_ranged(urls["large"])
        assert isinstance(again, RemoteObject) and again.version == got.version  # known from the blocks
        assert isinstance(lease.get_ranged(urls["tiny"]), Path)
        with again.open() as file:
            assert file.read(BLOCK) == large[:BLOCK]
        assert http_server.count(None, None) == 0  # no request at all
        assert lease.get(urls["large"]).read_bytes() == large  # the whole file, from blocks and the gap
        assert isinstance(lease.get_ranged(urls["large"]), Path)  # a whole copy serves every range
    assert _ranges(http_server, "ranges/large.bin") == [f"bytes={BLOCK}-{len(large) - 1}"]


def test_whole_download_fetches_only_what_the_blocks_lack(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(12 * BLOCK + 5)
    url = http_server.put("ranges/gaps.bin", data)
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)
        with obj.open() as file:
            for index in (3, 4, 9):
                file.seek(index * BLOCK)
                assert file.read(10) == data[index * BLOCK : index * BLOCK + 10]
        http_server.reset()
        assert lease.get(url).read_bytes() == data
    assert _ranges(http_server, "ranges/gaps.bin") == [
        f"bytes={BLOCK}-{3 * BLOCK - 1}",
        f"bytes={5 * BLOCK}-{9 * BLOCK - 1}",
        f"bytes={10 * BLOCK}-{len(data) - 1}",
    ]
    assert http_server.sent("ranges/gaps.bin") == len(data) - 4 * BLOCK


def test_a_whole_download_reads_its_entry_and_its_blocks_in_one_query(
    http_server: FaultServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, other = os.urandom(6 * BLOCK + 9), os.urandom(BLOCK)
    url, cold = http_server.put("ranges/one-query.bin", data), http_server.put("ranges/one-query-cold.bin", other)
    lookups: list[str] = []
    read = CacheIndex.read

    def counted(index: CacheIndex, sql: str, params: Any = ()) -> list[Any]:
        if "FROM entries WHERE url" in sql:
            lookups.append(sql)
        return read(index, sql, params)

    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)
        with obj.open() as file:
            file.seek(3 * BLOCK)
            assert file.read(10) == data[3 * BLOCK : 3 * BLOCK + 10]
        http_server.reset()
        monkeypatch.setattr(CacheIndex, "read", counted)
        assert lease.get(url).read_bytes() == data
        # one look before taking the entry lock, one under it for the entry and the object's blocks
        assert len(lookups) == 2
        lookups.clear()
        assert lease.get(cold).read_bytes() == other  # no blocks: the same two reads
        assert len(lookups) == 2
    assert _ranges(http_server, "ranges/one-query.bin") == [
        f"bytes={BLOCK}-{3 * BLOCK - 1}",
        f"bytes={4 * BLOCK}-{len(data) - 1}",
    ]


def test_a_whole_download_refetches_a_damaged_block_instead_of_copying_it(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(6 * BLOCK)
    url = http_server.put("ranges/damaged-whole.bin", data)
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)
        with obj.open() as file:
            assert file.read() == data  # every block cached
        _damage(_block_path(cache.directory, url, obj, 2), at=7)
        http_server.reset()
        assert lease.get(url).read_bytes() == data
    assert _ranges(http_server, "ranges/damaged-whole.bin") == _block_ranges([2], len(data))  # only that one


def test_local_files_are_read_in_place(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(10 * BLOCK))
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        assert lease.get_ranged(str(path)) == path
        assert cache.info().entries == 0


# -- video and audio functions by ranges, on every kind of store --------------------------------


@dataclasses.dataclass
class Remote:
    """Where a test puts objects: `put(key, data) -> url`, plus the settings that reach it."""

    put: Callable[[str, bytes], str]
    settings: dict[str, Any]


@pytest.fixture(params=["http", "s3", "gcs", "azure"])
def remote(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Remote:
    kind = request.param
    if kind == "http":
        server: FaultServer = request.getfixturevalue("http_server")
        return Remote(lambda key, data: server.put(key, data), {})
    if kind == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        for name, value in (
            ("AWS_ACCESS_KEY_ID", s3.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key),
            ("AWS_REGION", s3.region),
            ("AWS_ENDPOINT_URL", s3.endpoint),
            ("AWS_ALLOW_HTTP", "true"),
        ):
            monkeypatch.setenv(name, value)
        return Remote(lambda key, data: s3.put(s3.private_bucket, key, data), {})
    if kind == "gcs":
        gcs: GCSServer = request.getfixturevalue("gcs_server")
        return Remote(gcs.put, {"buckets": {f"gs://{gcs.bucket}": {"endpoint": gcs.endpoint}}})
    azure: AzureServer = request.getfixturevalue("azure_server")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azure.account)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", azure.key)
    return Remote(azure.put, {"buckets": {f"az://{azure.container}": {"endpoint": azure.endpoint}}})


def _pixels(image: PIL.Image.Image | None) -> np.ndarray:
    assert image is not None
    return np.asarray(image.convert("RGB"))


def test_video_and_audio_functions_by_ranges_match_a_local_copy(
    remote: Remote, home: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.id
    files = {
        "fast": make_noise_mp4(tmp_path / "fast.mp4", seconds=8, with_audio=True),
        "end": make_noise_mp4(tmp_path / "end.mp4", seconds=8, with_audio=True, faststart=False, seed=1),
    }
    urls = {kind: remote.put(f"ranged-{name}/{kind}.mp4", path.read_bytes()) for kind, path in files.items()}
    session = mt.init(home=home, quiet=True, **_overrides(**remote.settings))
    t = mt.create_table("videos", {"kind": mt.String, "video": mt.Video, "sound": mt.Audio})
    t.insert([{"kind": kind, "video": url, "sound": url} for kind, url in urls.items()], quiet=True)
    query = t.select(
        t.kind,
        meta=t.video.metadata,
        d=t.video.duration,
        f0=t.video.extract_frame(0.0),
        f1=t.video.extract_frame(3.3),
        f2=t.video.extract_frame(7.9),
        c=t.video.clip(2.0, 3.0),
        am=t.sound.metadata,
        ad=t.sound.duration,
        ac=t.sound.clip(1.0, 2.5, format="wav"),
    )
    rows = {row["kind"]: row for row in query.collect()}
    for kind, path in files.items():
        row = rows[kind]
        local = str(path)
        assert row["meta"] == video.metadata(local)
        assert row["d"] == video.duration(local)
        for column, at in (("f0", 0.0), ("f1", 3.3), ("f2", 7.9)):
            assert np.array_equal(_pixels(row[column]), _pixels(video.extract_frame(local, at)))
        local_clip = video.clip(local, 2.0, 3.0)
        assert video.metadata(row["c"]) == video.metadata(local_clip)
        assert np.array_equal(
            _pixels(video.extract_frame(row["c"], 0.5)), _pixels(video.extract_frame(local_clip, 0.5))
        )
        assert row["am"] == audio.metadata(local) and row["ad"] == audio.duration(local)
        assert Path(row["ac"]).read_bytes() == Path(audio.clip(local, 1.0, 2.5, format="wav")).read_bytes()
    info = session.cache.info()
    total = sum(path.stat().st_size for path in files.values())
    assert info.bytes_downloaded < 0.8 * total  # only the index and the parts decoded came over
    assert info.entries > 2 and all(isinstance(p, str) for p in t.select(p=t.video.localpath).collect()["p"])
    # localpath needs the whole files: they are complete now, and everything reads from them
    for row in t.select(t.kind, p=t.video.localpath).collect():
        assert Path(row["p"]).read_bytes() == files[row["kind"]].read_bytes()
    before = session.cache.info().bytes_downloaded
    again = {row["kind"]: row for row in query.collect()}
    assert session.cache.info().bytes_downloaded == before  # a warm repeat transfers nothing
    assert again["end"]["meta"] == rows["end"]["meta"]


def test_an_empty_object_is_read_whole_not_refused(remote: Remote, home: Path, request: pytest.FixtureRequest) -> None:
    url = remote.put(f"empty-{request.node.callspec.id}/nothing.mp4", b"")
    with FileCache(_settings(home, **remote.settings)) as cache, cache.lease() as lease:
        got = lease.get_ranged(url)  # it has no byte 0 to ask a range of: every store answers 416
        assert isinstance(got, Path) and got.read_bytes() == b""
    mt.init(home=home / "tables", quiet=True, **_overrides(**remote.settings))
    t = mt.create_table("vids", {"video": mt.Video})
    t.insert([{"video": url}], quiet=True)
    assert t.select(e=t.video.duration.errortype).collect()["e"] == ["MediaDecodeError"]  # not a fetch error


def test_frame_view_with_sampled_frames_reads_by_ranges(http_server: FaultServer, home: Path, tmp_path: Path) -> None:
    path = make_noise_mp4(tmp_path / "long.mp4", seconds=20, gop=10)
    url = http_server.put("ranged-view/long.mp4", path.read_bytes())
    mt.init(home=home, quiet=True, **_overrides())
    videos = mt.create_table("vids", {"name": mt.String, "video": mt.Video})
    videos.insert([{"name": "remote", "video": url}, {"name": "local", "video": str(path)}], quiet=True)
    frames = mt.create_view("frames", videos, iterator=mt.frames(videos.video, num_frames=4))
    got = {"remote": [], "local": []}
    for row in frames.select(frames.name, frames.pos, frames.timestamp, frames.frame).order_by(frames.pos).collect():
        got[row["name"]].append(row)
    expected = list(FrameIterator(str(path), num_frames=4))
    for name in ("remote", "local"):
        assert [(r["pos"], r["timestamp"]) for r in got[name]] == [(e["pos"], e["timestamp"]) for e in expected]
    for remote_row, local_row in zip(got["remote"], got["local"], strict=True):  # stored the same way
        assert np.array_equal(_pixels(remote_row["frame"]), _pixels(local_row["frame"]))
    assert http_server.sent("ranged-view/long.mp4") < 0.6 * path.stat().st_size


def test_a_column_needing_whole_files_downloads_them_whole(
    http_server: FaultServer, home: Path, tmp_path: Path
) -> None:
    path = make_noise_mp4(tmp_path / "v.mp4", seconds=6)
    url = http_server.put("ranged-whole/v.mp4", path.read_bytes())
    mt.init(home=home, quiet=True, **_overrides())
    t = mt.create_table("vids", {"video": mt.Video})
    t.insert([{"video": url}], quiet=True)
    row = t.select(d=t.video.duration, p=t.video.localpath).collect()[0]
    assert row["d"] == video.duration(str(path)) and Path(row["p"]).read_bytes() == path.read_bytes()
    assert _ranges(http_server, "ranged-whole/v.mp4") == [None]  # one plain GET, no ranges


def test_image_header_properties_read_the_first_block_only(
    http_server: FaultServer, home: Path, tmp_path: Path
) -> None:
    large = make_png(tmp_path / "large.png", size=(640, 480), noise=True)  # ~900 KiB: read by ranges
    small = make_png(tmp_path / "small.png", size=(64, 48), noise=True)
    assert large.stat().st_size > 4 * MIN_RANGED / 2
    urls = [http_server.put(f"ranged-image/{p.name}", p.read_bytes()) for p in (large, small)]
    mt.init(home=home, quiet=True, **_overrides())
    t = mt.create_table("images", {"image": mt.Image})
    t.insert([{"image": url} for url in urls], quiet=True)
    t.add_computed_column(w=t.image.width, m=t.image.mode)
    assert list(t.select(t.w, t.m, s=t.image.size).collect()) == [
        {"w": 640, "m": "RGB", "s": [640, 480]},
        {"w": 64, "m": "RGB", "s": [64, 48]},
    ]
    assert _ranges(http_server, "ranged-image/large.png") == [f"bytes=0-{BLOCK - 1}"]  # the header's block
    assert _ranges(http_server, "ranged-image/small.png") == [f"bytes=0-{BLOCK - 1}"]  # the whole file at once
    pixels = t.select(r=t.image.resize((32, 24))).collect()["r"][0]  # decoding needs the whole file
    assert pixels.size == (32, 24)
    assert http_server.sent("ranged-image/large.png") == large.stat().st_size


# -- versions ------------------------------------------------------------------------------------


def test_an_object_replaced_mid_read_is_an_error_never_mixed_bytes(
    remote: Remote, home: Path, request: pytest.FixtureRequest
) -> None:
    old, new = os.urandom(10 * BLOCK), os.urandom(10 * BLOCK)  # same size: only the version tells them apart
    key = f"replaced-{request.node.callspec.id}/obj.bin"
    url = remote.put(key, old)
    with FileCache(_settings(home, **remote.settings)) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)
        with obj.open() as file:
            assert file.read(100) == old[:100]
            time.sleep(1.1)  # a new last-modified second, for stores that compare dates
            remote.put(key, new)
            file.seek(5 * BLOCK)
            with pytest.raises(MediaChanged) as raised:
                file.read(100)
        assert "changed while it was being read" in str(raised.value) and raised.value.url == url
        if request.node.callspec.id == "gcs":  # fake-gcs-server ignores If-Match: the answer's ETag tells
            assert raised.value.status is None and "it now has ETag" in str(raised.value)
        else:  # the block's GET named the pinned ETag (If-Match) and the server refused it
            assert raised.value.status == 412 and "HTTP 412" in str(raised.value)
        again = lease.get_ranged(url)  # opening again reads the new version
        assert isinstance(again, RemoteObject) and again.version != obj.version
        with again.open() as file:
            assert file.read() == new


def test_media_changed_reaches_the_cell(http_server: FaultServer, home: Path, tmp_path: Path) -> None:
    path = make_noise_mp4(tmp_path / "v.mp4", seconds=6)
    url = http_server.put("changed/v.mp4", path.read_bytes())
    mt.init(home=home, quiet=True, **_overrides())
    t = mt.create_table("vids", {"video": mt.Video})
    t.insert([{"video": url}], quiet=True)
    assert t.select(d=t.video.duration).collect()["d"] == [video.duration(str(path))]  # index blocks cached
    http_server.put("changed/v.mp4", make_noise_mp4(tmp_path / "w.mp4", seconds=6, seed=5).read_bytes())
    failed = t.select(f=t.video.extract_frame(3.0).errortype, m=t.video.extract_frame(3.0).errormsg).collect()[0]
    assert failed["f"] == "MediaChanged" and "changed while it was being read" in failed["m"]
    fresh = t.select(f=t.video.extract_frame(3.0)).collect()[0]["f"]  # the next read opens the new version
    assert np.array_equal(_pixels(fresh), _pixels(video.extract_frame(str(tmp_path / "w.mp4"), 3.0)))


# -- damage, servers without ranges, crashes, processes -------------------------------------------


def test_a_damaged_block_is_fetched_again_not_served(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(8 * BLOCK)
    url = http_server.put("damaged/obj.bin", data)
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)
        with obj.open() as file:
            file.seek(3 * BLOCK)
            assert file.read(BLOCK) == data[3 * BLOCK : 4 * BLOCK]
        block = _block_path(cache.directory, url, obj, 3)
        damaged = _damage(block, at=1000)
        with obj.open() as file:
            file.seek(3 * BLOCK)
            assert file.read(BLOCK) == data[3 * BLOCK : 4 * BLOCK]
        assert block.read_bytes() != damaged  # replaced by a good copy
    assert _ranges(http_server, "damaged/obj.bin").count(_block_ranges([3], len(data))[0]) == 2
    assert _check_consistent(home / "file_cache") == 2


def test_a_server_ignoring_range_gets_a_whole_download(http_server: FaultServer, home: Path, tmp_path: Path) -> None:
    data = os.urandom(10 * BLOCK)
    first = http_server.put("norange/a.bin", data)
    second = http_server.put("norange/b.bin", data[::-1])
    http_server.set_fault(None, ignore_range=True)
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        got = lease.get_ranged(first)
        assert isinstance(got, Path) and got.read_bytes() == data
        assert _ranges(http_server, "norange/a.bin") == [f"bytes=0-{BLOCK - 1}", None]  # detected, then whole
        got = lease.get_ranged(second)
        assert isinstance(got, Path) and got.read_bytes() == data[::-1]
        assert _ranges(http_server, "norange/b.bin") == [None]  # the server is known now: no range tried
    path = make_noise_mp4(tmp_path / "v.mp4", seconds=4)
    url = http_server.put("norange/v.mp4", path.read_bytes())
    mt.init(home=home / "other", quiet=True, **_overrides())
    t = mt.create_table("vids", {"video": mt.Video})
    t.insert([{"video": url}], quiet=True)
    assert t.select(d=t.video.duration).collect()["d"] == [video.duration(str(path))]


# Children are spawned (a fresh interpreter importing mediatable): generous for a loaded machine,
# bounded all the same, and every child is killed and joined whatever happens (a live child makes
# pytest hang at exit).
PROCESS_DEADLINE = 200.0


def _stop(processes: list[Any]) -> None:
    """Kill the children still alive and wait for all of them (bounded)."""
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        if process.pid is not None:
            process.join(timeout=30)


def _child_read_block(home: str, url: str, offset: int) -> None:
    with FileCache(_settings(Path(home))) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)
        with obj.open() as file:
            file.seek(offset)
            file.read(10)


def test_sigkill_during_a_block_fetch_leaves_nothing_broken(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(8 * BLOCK)
    url = http_server.put("crash/obj.bin", data)
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        assert isinstance(lease.get_ranged(url), RemoteObject)  # the first block is cached
    http_server.set_fault("crash/obj.bin", slow_body=0.5)  # 16 KiB per 0.5 s: ~2 s per block
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_child_read_block, args=(str(home), url, 5 * BLOCK + 7))
    try:
        child.start()
        # a spawned child imports everything first: on a loaded machine that takes a while
        deadline = time.monotonic() + PROCESS_DEADLINE
        while time.monotonic() < deadline and child.is_alive() and http_server.sent("crash/obj.bin") < 16 * KB:
            time.sleep(0.02)
        assert http_server.sent("crash/obj.bin") >= 16 * KB, f"the child never fetched its block ({child.exitcode=})"
        assert child.is_alive(), "the child finished its block before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
        assert child.exitcode == -signal.SIGKILL
    finally:
        _stop([child])
    http_server.reset()
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        assert (cache.info().entries, cache.info().in_flight_bytes) == (1, 0)
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)
        with obj.open() as file:
            file.seek(5 * BLOCK)
            assert file.read(BLOCK) == data[5 * BLOCK : 6 * BLOCK]
    assert _ranges(http_server, "crash/obj.bin") == _block_ranges([5], len(data))
    assert _check_consistent(home / "file_cache") == 2


def _child_read_ranges(home: str, url: str, offsets: list[int], results: Any) -> None:
    try:
        with FileCache(_settings(Path(home))) as cache, cache.lease() as lease:
            obj = lease.get_ranged(url)
            assert isinstance(obj, RemoteObject)
            with obj.open() as file:
                pieces = []
                for offset in offsets:
                    file.seek(offset)
                    pieces.append(file.read(2 * KB))
    except BaseException:
        results.put(traceback.format_exc())  # the test fails with the child's reason, at once
        raise
    results.put(pieces)


def test_eight_processes_reading_the_same_ranges_fetch_each_block_once(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(24 * BLOCK)
    url = http_server.put("procs/obj.bin", data)
    http_server.set_fault("procs/obj.bin", latency=0.02)
    offsets = [0, 3 * BLOCK - 100, 7 * BLOCK + 5, 20 * BLOCK, 11 * BLOCK, 23 * BLOCK + 1]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_child_read_ranges, args=(str(home), url, offsets, results)) for _ in range(8)]
    deadline = time.monotonic() + PROCESS_DEADLINE
    outcomes: list[Any] = []
    try:
        for process in processes:
            process.start()
        while len(outcomes) < len(processes):
            left = deadline - time.monotonic()
            assert left > 0, f"{len(outcomes)} of {len(processes)} children answered in {PROCESS_DEADLINE} s"
            try:
                outcome = results.get(timeout=min(left, 1.0))
            except queue.Empty:
                died = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                assert not died, f"children died without answering: exit codes {died}"
                continue
            assert not isinstance(outcome, str), f"a child failed:\n{outcome}"
            outcomes.append(outcome)
        for process in processes:
            process.join(timeout=max(deadline - time.monotonic(), 10))
        assert [process.exitcode for process in processes] == [0] * len(processes)
    finally:
        _stop(processes)
        results.close()
        results.join_thread()
    expected = [data[offset : offset + 2 * KB] for offset in offsets]
    assert all(pieces == expected for pieces in outcomes)
    blocks = sorted({i for offset in offsets for i in range(offset // BLOCK, (offset + 2 * KB - 1) // BLOCK + 1)})
    ranges = _ranges(http_server, "procs/obj.bin")
    assert sorted(ranges) == sorted(_block_ranges(blocks, len(data)))  # one GET per block, in all
    assert _check_consistent(home / "file_cache") == len(blocks)


def test_threads_reading_the_same_ranges_fetch_each_block_once(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(16 * BLOCK)
    url = http_server.put("threads/obj.bin", data)
    http_server.set_fault("threads/obj.bin", latency=0.05)
    offsets = [5 * BLOCK + 3, 0, 12 * BLOCK, 9 * BLOCK - 10]
    errors: list[BaseException] = []
    with FileCache(_settings(home)) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)

        def read() -> None:
            try:
                with obj.open() as file:
                    for offset in offsets:
                        file.seek(offset)
                        assert file.read(100) == data[offset : offset + 100]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=read, daemon=True) for _ in range(8)]  # daemon: never holds up exit
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=PROCESS_DEADLINE)
        assert not any(thread.is_alive() for thread in threads), "a reader is stuck"
    assert not errors
    got = sorted(_ranges(http_server, "threads/obj.bin"))
    assert got == sorted(_block_ranges([0, 5, 8, 9, 12], len(data)))  # 9 * BLOCK - 10 + 100 reaches block 9


def test_blocks_obey_the_budget(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(40 * BLOCK)
    url = http_server.put("budget/obj.bin", data)
    with FileCache(_settings(home, cache_size=12 * BLOCK)) as cache, cache.lease() as lease:
        obj = lease.get_ranged(url)
        assert isinstance(obj, RemoteObject)
        with obj.open() as file:
            assert file.read() == data  # 40 blocks through a cache that holds fewer than 12
        info = cache.info()
        assert info.bytes + info.in_flight_bytes <= 12 * BLOCK and info.evictions > 0
