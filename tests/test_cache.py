"""io/cache/ (FileCache, Lease) against real local servers (the CLI: test_cache_cli.py).

Every download goes to the fault-injecting HTTP server (tests/servers/http.py), which counts the
requests it sees; cross-process behaviour runs real processes (multiprocessing 'spawn').
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediatable.config import Settings, load_settings
from mediatable.errors import CacheError, MediaError, MediaFetchError, MediaNotFound
from mediatable.exec.status import TransferBars
from mediatable.io.cache import CacheThrashingWarning, FileCache
from servers.cloud import S3Server
from servers.http import FaultServer

KB = 1024


def _settings(home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"retry_backoff": 0.01, "progress": False}
    values.update(overrides)
    return load_settings(home, environ={}, **values)


@pytest.fixture
def home(clean_env: Path) -> Path:
    return clean_env


@pytest.fixture
def cache(home: Path) -> Iterator[FileCache]:
    with FileCache(_settings(home)) as file_cache:
        yield file_cache


def _put_many(server: FaultServer, prefix: str, count: int, size: int) -> dict[str, bytes]:
    """`count` objects of `size` random bytes; returns url -> content."""
    objects = {}
    for i in range(count):
        data = os.urandom(size)
        objects[server.put(f"{prefix}/{i:04d}.jpg", data)] = data
    return objects


def _check_consistent(cache_dir: Path) -> int:
    """The index and the files agree, nothing is half-written or left locked; returns the entry count."""
    db = sqlite3.connect(cache_dir / "index.db")
    try:
        rows = db.execute("SELECT path, size FROM entries").fetchall()
        totals = db.execute("SELECT entries, bytes FROM totals").fetchone()
        digests = db.execute("SELECT COUNT(*) FROM entries WHERE sha256 IS NOT NULL").fetchone()[0]
    finally:
        db.close()
    files = sorted(f"{p.parent.name}/{p.name}" for p in cache_dir.glob("??/*"))
    assert files == sorted(path for path, _ in rows)
    for path, size in rows:
        assert (cache_dir / path).stat().st_size == size
    assert totals == (len(rows), sum(size for _, size in rows))
    assert digests == len(rows)  # every download recorded its content hash
    assert not list((cache_dir / "tmp").iterdir())  # no download left half-done
    assert {p.name for p in (cache_dir / "locks").iterdir()} <= {"entries.lock"} | {
        f"{kind}.{shard:02x}.lock" for kind in ("pins", "owners") for shard in range(256)
    }
    return len(rows)


# -- basics ---------------------------------------------------------------------------------


def test_miss_then_hit_keeps_extension_and_counts(http_server: FaultServer, cache: FileCache) -> None:
    url = http_server.put("basic/photo.JPG", b"jpeg bytes")
    with cache.lease() as lease:
        path = lease.get(url)
        assert path.read_bytes() == b"jpeg bytes"
        assert path.suffix == ".jpg" and path.parent.parent == cache.directory
        assert path.parent.name == path.name[:2] and len(path.stem) == 64
        assert lease.get(url) == path
    with cache.lease() as lease:
        assert lease.get(url + "?") == path or lease.get(url) == path
    assert http_server.count("basic/photo.JPG") == 1
    info = cache.info()
    assert (info.entries, info.bytes, info.misses, info.bytes_downloaded) == (1, 10, 1, 10)
    assert info.hits >= 2
    assert "entries:    1" in str(info)
    assert _check_consistent(cache.directory) == 1


def test_reopened_cache_serves_from_the_index(http_server: FaultServer, home: Path) -> None:
    objects = _put_many(http_server, "reopen", 5, 1000)
    with FileCache(_settings(home)) as first, first.lease() as lease:
        paths = [lease.get(url) for url in objects]
    with FileCache(_settings(home)) as second, second.lease() as lease:
        assert list(lease.get_many(list(objects))) == paths
        assert second.info().hits == 5 and second.info().misses == 0
    assert http_server.count() == 5


def test_local_files_are_read_in_place(cache: FileCache, tmp_path: Path) -> None:
    local = tmp_path / "local.png"
    local.write_bytes(b"png")
    with cache.lease() as lease:
        assert lease.get(str(local)) == local
        assert lease.get(local.as_uri()) == local
        assert list(lease.get_many([local, str(local)])) == [local, local]
        with pytest.raises(MediaNotFound):
            lease.get(str(tmp_path / "missing.png"))
        (missing,) = lease.get_many([str(tmp_path / "missing.png")])
        assert isinstance(missing, MediaNotFound)
    assert cache.info().entries == 0
    assert not list(cache.directory.glob("??"))


def test_externally_deleted_file_is_fetched_again(http_server: FaultServer, cache: FileCache) -> None:
    url = http_server.put("deleted/a.bin", b"abc")
    with cache.lease() as lease:
        path = lease.get(url)
    path.unlink()
    with cache.lease() as lease:
        assert lease.get(url).read_bytes() == b"abc"
    assert http_server.count("deleted/a.bin") == 2
    assert _check_consistent(cache.directory) == 1


def test_closed_lease_and_cache_refuse_work(http_server: FaultServer, home: Path) -> None:
    url = http_server.put("closed/a.bin", b"abc")
    file_cache = FileCache(_settings(home))
    lease = file_cache.lease()
    lease.get(url)
    lease.close()
    with pytest.raises(CacheError):
        lease.get(url)  # even a cached file: a closed lease pins nothing
    file_cache.close()
    file_cache.close()  # idempotent
    with pytest.raises(CacheError):
        file_cache.lease()


def test_unwritable_cache_folder_is_a_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the home folder should be")
    with pytest.raises(CacheError):
        FileCache(_settings(blocker))


# -- faults ---------------------------------------------------------------------------------


def test_transient_faults_are_retried_and_never_leave_corrupt_entries(
    http_server: FaultServer, cache: FileCache
) -> None:
    data = {name: os.urandom(100 * KB) for name in ("e500", "e503", "short", "reset")}
    urls = {name: http_server.put(f"faults/{name}.bin", content) for name, content in data.items()}
    http_server.set_fault("faults/e500.bin", status=500, times=2)
    http_server.set_fault("faults/e503.bin", status=503, times=1)
    http_server.set_fault("faults/short.bin", short_body=10 * KB, times=2)
    http_server.set_fault("faults/reset.bin", reset_after=10 * KB, times=2)
    with cache.lease() as lease:
        for name, url in urls.items():
            assert lease.get(url).read_bytes() == data[name]
    assert [http_server.count(f"faults/{name}.bin") for name in urls] == [3, 2, 3, 3]
    assert _check_consistent(cache.directory) == 4


def test_persistent_short_body_fails_without_an_entry(http_server: FaultServer, home: Path) -> None:
    url = http_server.put("faults/always-short.bin", os.urandom(100 * KB))
    http_server.set_fault("faults/always-short.bin", short_body=1000)
    with FileCache(_settings(home, max_retries=2)) as file_cache, file_cache.lease() as lease:
        with pytest.raises(MediaFetchError) as raised:
            lease.get(url)
        assert raised.value.is_retryable
        assert http_server.count("faults/always-short.bin") == 3
        assert _check_consistent(file_cache.directory) == 0
        assert not list(file_cache.directory.rglob("*.part"))


def test_not_found_fails_fast_and_is_not_cached(http_server: FaultServer, cache: FileCache) -> None:
    url = http_server.url("faults/none.jpg") + "?X-Amz-Signature=SECRETSIG"
    with cache.lease() as lease, pytest.raises(MediaNotFound) as raised:
        lease.get(url)
    assert http_server.count("faults/none.jpg") == 1
    assert "SECRETSIG" not in f"{raised.value} {raised.value.url!r} {raised.value.__cause__}"
    assert "faults/none.jpg" in str(raised.value) and "404" in str(raised.value)
    assert _check_consistent(cache.directory) == 0


# -- get_many -------------------------------------------------------------------------------


def test_get_many_yields_in_order_with_errors_in_place(
    http_server: FaultServer, home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    objects = _put_many(http_server, "many", 30, 2 * KB)
    urls = list(objects)
    http_server.set_fault("many/0003.jpg", status=404)
    http_server.set_fault("many/0007.jpg", status=403)
    http_server.set_fault("many/0011.jpg", status=500)
    secret = "?token=VERYSECRET"
    urls[3] += secret
    urls[11] += secret
    wanted = [*urls, urls[0], urls[5]]  # duplicates are fetched once
    with FileCache(_settings(home), progress_bars=TransferBars(_settings(home))) as shown, shown.lease() as lease:
        results = list(lease.get_many(wanted, progress=True))
    assert len(results) == len(wanted)
    for i, result in enumerate(results):
        url = wanted[i]
        if i in (3, 7, 11):
            assert isinstance(result, MediaError)
            text = str(result)
            assert "VERYSECRET" not in text and "VERYSECRET" not in repr(result.url)
            assert f"many/{i:04d}.jpg" in text
            assert {3: "404", 7: "403", 11: "500"}[i] in text
        else:
            assert isinstance(result, Path)
            assert result.read_bytes() == objects[url.split("?")[0]]
    assert http_server.count("many/0000.jpg") == 1 and http_server.count("many/0005.jpg") == 1
    assert http_server.count("many/0003.jpg") == 1  # 404: no retry
    stderr = capfd.readouterr().err
    assert "Fetching media" in stderr and "objects" in stderr
    assert "VERYSECRET" not in stderr


def test_get_many_bounds_concurrency(http_server: FaultServer, home: Path) -> None:
    objects = _put_many(http_server, "bounded", 24, KB)
    http_server.set_fault(None, latency=0.05)
    with FileCache(_settings(home, max_concurrent_downloads=4)) as file_cache, file_cache.lease() as lease:
        assert all(isinstance(r, Path) for r in lease.get_many(list(objects)))
    assert 1 < http_server.peak_concurrency <= 4


def test_get_many_yields_the_first_result_before_later_downloads_finish(
    http_server: FaultServer, cache: FileCache
) -> None:
    objects = _put_many(http_server, "stream", 6, KB)
    http_server.set_fault("stream/0005.jpg", latency=1.0)
    with cache.lease() as lease:
        results = lease.get_many(list(objects))
        first = next(results)
        assert isinstance(first, Path)
        assert cache.info().entries < 6  # the slow one is still on its way
        assert len([first, *results]) == 6


def test_get_many_accepts_generators_and_stops_early(http_server: FaultServer, cache: FileCache) -> None:
    objects = _put_many(http_server, "gen", 10, KB)
    with cache.lease() as lease:
        results = lease.get_many(url for url in objects)
        assert isinstance(next(results), Path)
        results.close()  # an abandoned iteration cancels what did not start
        assert all(isinstance(r, Path) for r in lease.get_many(iter(objects)))


# -- single flight --------------------------------------------------------------------------


def test_single_flight_across_threads(http_server: FaultServer, cache: FileCache) -> None:
    objects = _put_many(http_server, "threads", 200, 2 * KB)
    http_server.set_fault(None, latency=0.005)
    urls = list(objects)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        order = urls[:]
        random.Random(seed).shuffle(order)
        try:
            with cache.lease() as lease:
                if seed % 2:
                    results = list(zip(order, lease.get_many(order), strict=True))
                else:
                    results = [(url, lease.get(url)) for url in order]
                for url, path in results:
                    assert isinstance(path, Path) and path.read_bytes() == objects[url]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert http_server.count() == 200
    assert _check_consistent(cache.directory) == 200


def _child_fetch_all(home: str, urls: list[str], seed: int, results: multiprocessing.Queue) -> None:
    order = urls[:]
    random.Random(seed).shuffle(order)
    with FileCache(_settings(Path(home))) as file_cache, file_cache.lease() as lease:
        found = {url: str(path) for url, path in zip(order, lease.get_many(order), strict=True)}
    results.put(found)


def test_single_flight_across_processes(http_server: FaultServer, home: Path) -> None:
    objects = _put_many(http_server, "procs", 200, 2 * KB)
    http_server.set_fault(None, latency=0.005)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_child_fetch_all, args=(str(home), list(objects), seed, results)) for seed in range(8)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
    finally:  # a child left waiting to hand over its result would keep pytest from exiting
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
    assert http_server.count() == 200
    for found in outcomes:
        assert set(found) == set(objects)
        for url, path in found.items():
            assert Path(path).read_bytes() == objects[url]
    assert len({path for found in outcomes for path in found.values()}) == 200
    assert _check_consistent(home / "file_cache") == 200


# -- crashes --------------------------------------------------------------------------------


def _child_download(home: str, url: str) -> None:
    with FileCache(_settings(Path(home))) as file_cache, file_cache.lease() as lease:
        lease.get(url)


def test_sigkill_mid_download_leaves_no_entry_and_orphans_are_removed(http_server: FaultServer, home: Path) -> None:
    data = os.urandom(1024 * KB)
    url = http_server.put("crash/large.bin", data)
    http_server.set_fault("crash/large.bin", slow_body=0.05)  # ~3 s for the whole body
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_child_download, args=(str(home), url))
    child.start()
    cache_dir = home / "file_cache"
    deadline = time.monotonic() + 90  # a spawned child imports mediatable: ~20 s on a loaded machine
    parts: list[Path] = []
    while time.monotonic() < deadline and not parts:
        time.sleep(0.02)
        parts = list(cache_dir.glob("tmp/*.part")) if cache_dir.exists() else []
    assert parts, "the child never started its download"
    time.sleep(0.2)  # well into the body (about 3 s long)
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL
    assert all(p.exists() for p in parts)  # the orphan is there until someone opens the cache

    http_server.reset()
    with FileCache(_settings(home)) as file_cache:
        assert not any(p.exists() for p in parts)
        info = file_cache.info()
        assert (info.entries, info.in_flight_bytes) == (0, 0)
        assert _check_consistent(cache_dir) == 0
        with file_cache.lease() as lease:
            assert lease.get(url).read_bytes() == data
    assert _check_consistent(cache_dir) == 1


# -- budget, pins, eviction -----------------------------------------------------------------


def test_concurrent_downloads_that_fit_are_all_cached(http_server: FaultServer, home: Path) -> None:
    # An entry published in the same index transaction as another download's reservation used to
    # count twice there (its bytes and its reservation), so one of these sometimes went uncached.
    for attempt in range(20):
        urls = list(_put_many(http_server, f"fit{attempt}", 3, 100 * KB))
        with FileCache(_settings(home / f"r{attempt}", cache_size=350 * KB)) as file_cache:
            with file_cache.lease() as lease:
                assert all(isinstance(path, Path) for path in lease.get_many(urls))
            assert file_cache.info().entries == 3


def test_budget_smaller_than_working_set(http_server: FaultServer, home: Path) -> None:
    objects = _put_many(http_server, "budget", 30, 10 * KB)
    budget = 100 * KB
    with FileCache(_settings(home, cache_size=budget)) as file_cache:
        for url, data in objects.items():
            with file_cache.lease() as lease:
                assert lease.get(url).read_bytes() == data
            assert file_cache.info().bytes <= budget
        with file_cache.lease() as lease:  # one lease over everything: a sliding window of pins
            for url, path in zip(objects, lease.get_many(list(objects)), strict=True):
                assert isinstance(path, Path) and path.read_bytes() == objects[url]
                assert file_cache.info().bytes <= budget
        info = file_cache.info()
        assert info.evictions > 0 and info.entries <= 10
        assert _check_consistent(file_cache.directory) == info.entries


def test_thrashing_lease_warns_with_a_suggested_size(http_server: FaultServer, home: Path) -> None:
    objects = _put_many(http_server, "thrash", 12, 10 * KB)
    with FileCache(_settings(home, cache_size=60 * KB)) as file_cache, file_cache.lease() as lease:
        for url in objects:  # a scan, one file at a time: pins slide, the oldest files are evicted
            assert all(isinstance(path, Path) for path in lease.get_many([url]))
        with pytest.warns(CacheThrashingWarning, match=r"cache_size to at least \d+KiB"):
            for url in objects:
                lease.get(url)


def test_pinned_files_are_not_evicted(http_server: FaultServer, home: Path) -> None:
    objects = _put_many(http_server, "pins", 20, 10 * KB)
    urls = list(objects)
    with FileCache(_settings(home, cache_size=100 * KB)) as file_cache:
        holder = file_cache.lease()
        pinned = holder.get(urls[0])
        for url in urls[1:]:
            with file_cache.lease() as lease:
                lease.get(url)
        assert pinned.read_bytes() == objects[urls[0]]
        assert file_cache.info().bytes <= 100 * KB
        holder.close()
        for url in urls[1:]:
            with file_cache.lease() as lease:
                lease.get(url)
        assert not pinned.exists()  # unpinned: evicted like any other file


def test_a_closing_lease_unpins_only_what_no_other_lease_holds(http_server: FaultServer, home: Path) -> None:
    urls = list(_put_many(http_server, "unpin", 6, 1 * KB))
    with FileCache(_settings(home)) as file_cache:
        first, second = file_cache.lease(), file_cache.lease()
        assert all(isinstance(p, Path) for p in first.get_many(urls[:2]))
        assert all(isinstance(p, Path) for p in second.get_many(urls))
        assert file_cache.info().pinned == 6
        second.close()  # what the first lease holds stays pinned
        assert file_cache.info().pinned == 2
        third = file_cache.lease()
        third.get(urls[5])
        first.close()
        assert file_cache.info().pinned == 1
        third.close()  # the last pins of the process: all of its locks go at once
        assert file_cache.info().pinned == 0
        with file_cache.lease() as again:  # and pins are taken again afterwards
            again.get(urls[0])
            assert file_cache.info().pinned == 1
        assert file_cache.info().pinned == 0


def _child_hold(home: str, url: str, ready: multiprocessing.Event, done: multiprocessing.Event) -> None:
    with FileCache(_settings(Path(home))) as file_cache, file_cache.lease() as lease:
        lease.get(url)
        ready.set()  # the pin reaches the index on its own about a second later
        done.wait(60)


def test_pins_hold_across_processes_until_the_holder_dies(http_server: FaultServer, home: Path) -> None:
    objects = _put_many(http_server, "xpins", 30, 10 * KB)
    urls = list(objects)
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    child = context.Process(target=_child_hold, args=(str(home), urls[0], ready, done))
    child.start()
    try:
        assert ready.wait(30)
        with FileCache(_settings(home, cache_size=100 * KB)) as file_cache:
            deadline = time.monotonic() + 10
            while file_cache.info().pinned == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            pinned = file_cache.directory / next(file_cache.directory.glob("??/*.jpg")).relative_to(
                file_cache.directory
            )
            for url in urls[1:20]:
                with file_cache.lease() as lease:
                    lease.get(url)
            assert pinned.exists() and file_cache.info().pinned == 1
            os.kill(child.pid, signal.SIGKILL)  # a dead holder's pins no longer count
            child.join(timeout=10)
            for url in urls[20:]:
                with file_cache.lease() as lease:
                    lease.get(url)
            assert not pinned.exists() and file_cache.info().pinned == 0
            assert file_cache.info().bytes <= 100 * KB
    finally:
        if child.is_alive():  # (setting an Event a killed process waits on would block forever)
            done.set()
            child.join(timeout=10)
        if child.is_alive():
            child.kill()


def test_object_larger_than_the_budget_is_readable_but_not_cached(http_server: FaultServer, home: Path) -> None:
    big = os.urandom(300 * KB)
    url = http_server.put("huge/video.mp4", big)
    with FileCache(_settings(home, cache_size=100 * KB)) as file_cache:
        with file_cache.lease() as first, file_cache.lease() as second:
            path = first.get(url)
            assert path.read_bytes() == big and path.suffix == ".mp4"
            assert first.get(url) == path  # the lease keeps its private copy
            other = second.get(url)
            assert other.read_bytes() == big
            assert file_cache.info().entries == 0
        assert not path.exists() and not other.exists()
        assert not list((file_cache.directory / "leases").iterdir())
        assert _check_consistent(file_cache.directory) == 0


def test_release_unpins_and_deletes_private_files(http_server: FaultServer, home: Path) -> None:
    small = http_server.put("release/small.bin", b"s" * KB)
    big = http_server.put("release/big.bin", b"b" * 300 * KB)
    with FileCache(_settings(home, cache_size=100 * KB)) as file_cache, file_cache.lease() as lease:
        lease.get(small)
        private = lease.get(big)
        assert file_cache.info().pinned == 1
        lease.release(small)
        lease.release(big)
        assert file_cache.info().pinned == 0
        assert not private.exists()


def test_prune_clear_and_orphans(http_server: FaultServer, cache: FileCache) -> None:
    objects = _put_many(http_server, "prune", 10, 10 * KB)
    with cache.lease() as lease:
        for url in objects:
            lease.get(url)
    stray = cache.directory / "ab" / "stray.jpg"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"left by a crash between rename and index")
    pruned = cache.prune(max_bytes=50 * KB)
    assert pruned.entries == 5 and pruned.bytes == 50 * KB and pruned.orphans == 1
    assert cache.info().bytes == 50 * KB and not stray.exists()
    with cache.lease() as lease:
        kept = lease.get(list(objects)[-1])
        cleared = cache.clear()
        assert cleared.entries == 4 and kept.exists()  # a pinned file survives clear
    assert cache.clear().entries == 1
    assert _check_consistent(cache.directory) == 0


# -- freshness ------------------------------------------------------------------------------


def test_etag_validation_serves_fresh_content(http_server: FaultServer, home: Path) -> None:
    url = http_server.put("fresh/doc.pdf", b"version 1")
    with FileCache(_settings(home, cache_validation="etag")) as file_cache:
        with file_cache.lease() as lease:
            assert lease.get(url).read_bytes() == b"version 1"
            assert lease.get(url).read_bytes() == b"version 1"
        with file_cache.lease() as lease:
            assert lease.get(url).read_bytes() == b"version 1"  # unchanged: a HEAD, no GET
        assert http_server.count("fresh/doc.pdf") == 1
        http_server.put("fresh/doc.pdf", b"version 2, longer")
        with file_cache.lease() as lease:
            assert lease.get(url).read_bytes() == b"version 2, longer"
            (path,) = lease.get_many([url])
            assert isinstance(path, Path) and path.read_bytes() == b"version 2, longer"
        assert http_server.count("fresh/doc.pdf") == 2
        http_server.put("fresh/doc.pdf", b"version 3, same size!")
        with file_cache.lease() as lease:
            (path,) = lease.get_many([url])
            assert isinstance(path, Path) and path.read_bytes() == b"version 3, same size!"
        http_server.delete("fresh/doc.pdf")
        with file_cache.lease() as lease, pytest.raises(MediaNotFound):
            lease.get(url)  # gone upstream: never served stale
        assert _check_consistent(file_cache.directory) == 1


def test_never_validation_sends_no_request_for_cached_files(http_server: FaultServer, cache: FileCache) -> None:
    url = http_server.put("stale/doc.pdf", b"version 1")
    with cache.lease() as lease:
        lease.get(url)
    http_server.put("stale/doc.pdf", b"version 2")
    http_server.reset()
    with cache.lease() as lease:
        assert lease.get(url).read_bytes() == b"version 1"
    assert http_server.count(method=None) == 0


# -- S3 -------------------------------------------------------------------------------------


def test_s3_objects_through_moto(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_REGION", s3_server.region)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    objects = {}
    for i in range(10):
        data = os.urandom(5 * KB)
        objects[s3_server.put(s3_server.private_bucket, f"cache/{i}.png", data)] = data
    missing = f"s3://{s3_server.private_bucket}/cache/missing.png"
    with FileCache(_settings(home)) as file_cache, file_cache.lease() as lease:
        results = list(lease.get_many([*objects, missing]))
        for url, path in zip(objects, results, strict=False):
            assert isinstance(path, Path) and path.read_bytes() == objects[url] and path.suffix == ".png"
        assert isinstance(results[-1], MediaNotFound)
        assert list(lease.get_many(list(objects))) == results[:-1]
        assert file_cache.info().misses == 11
        assert _check_consistent(file_cache.directory) == 10
