"""The file cache under faults (issue 10): deadlocks, stalls, damage, crashes, ownership, pins.

Real processes (multiprocessing 'spawn', or `unshare` for a private pid namespace) share one
cache folder; every download goes to the fault-injecting HTTP server (tests/servers/http.py).
Each test here failed before the fix it covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mediatable.cli import main
from mediatable.config import Settings, load_settings
from mediatable.errors import CacheError, MediaFetchTimeout
from mediatable.io.cache import FileCache
from mediatable.io.cache.index import CacheIndex
from mediatable.io.cache.locks import EntryLocks
from mediatable.io.transfer import RetryPolicy, StallPolicy, TransferStage
from servers.http import FaultServer

KB = 1024
# A bound, not an expectation: a spawned child imports mediatable first (~2.5 s of CPU), and with the suite on
# two workers and other work around, that took over 30 s once.
CHILD_START_SECONDS = 120


def _settings(home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"retry_backoff": 0.01, "progress": False}
    values.update(overrides)
    return load_settings(home, environ={}, **values)


def _stop(processes: list[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join(timeout=10)


# -- 1. no deadlock across processes with a budget below the working set ---------------------


def _child_scan(home: str, urls: list[str], seed: int, cache_size: int, results: multiprocessing.Queue) -> None:
    order = urls[:]
    random.Random(seed).shuffle(order)
    bad = 0
    with FileCache(_settings(Path(home), cache_size=cache_size)) as cache, cache.lease() as lease:
        for url, path in zip(order, lease.get_many(order), strict=True):
            if not isinstance(path, Path) or path.read_bytes()[:4] != url.rsplit("/", 1)[1][:4].encode():
                bad += 1
    results.put(bad)


def test_processes_sharing_a_small_cache_never_deadlock(http_server: FaultServer, tmp_path: Path) -> None:
    """200 images of 24 KB, a budget of 1.5 MB, 20 ms latency, 4 processes: all finish, all values right.

    Before: every thread of asyncio's default executor blocked on entry locks the other process
    held, while the work that frees them waited for a thread of that pool: stuck for good.
    """
    urls = []
    for i in range(200):
        name = f"{i:04d}"
        urls.append(http_server.put(f"deadlock/{name}.jpg", name.encode() + os.urandom(24 * KB - 4)))
    http_server.set_fault(None, latency=0.02)
    home = tmp_path / "shared"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_child_scan, args=(str(home), urls, seed, 1_500_000, results)) for seed in range(4)
    ]
    for process in processes:
        process.start()
    try:
        deadline = time.monotonic() + 150  # a deadlock ends here (queue.Empty)
        outcomes = [results.get(timeout=max(deadline - time.monotonic(), 0.1)) for _ in processes]
    finally:
        _stop(processes)
    assert outcomes == [0, 0, 0, 0]
    with FileCache(_settings(home, cache_size=1_500_000)) as cache:
        assert cache.verify().clean
        assert cache.info().bytes <= 1_500_000


# -- 5. stalls cost a bounded time -----------------------------------------------------------


def test_defaults_bound_a_stall_to_about_two_minutes() -> None:
    settings = Settings()
    stall = StallPolicy.from_settings(settings)
    retry = RetryPolicy.from_settings(settings)
    backoff = sum(retry.delay(n, rng=lambda a, b: b) for n in range(1, retry.max_retries + 1))
    assert stall.timeout * (retry.max_retries + 1) + backoff <= 130
    assert stall.min_rate > 0


def test_a_trickling_server_is_cut_off(http_server: FaultServer, tmp_path: Path) -> None:
    """16 KiB every 0.25 s (64 KiB/s) is below a minimum of 1 MiB/s: a stall, retried, then an error."""
    url = http_server.put("stall/trickle.bin", os.urandom(2 * 1024 * KB))
    http_server.set_fault("stall/trickle.bin", slow_body=0.25)
    settings = _settings(tmp_path, request_timeout=0.5, min_transfer_rate="1MiB", max_retries=1)
    started = time.monotonic()
    with FileCache(settings) as cache, cache.lease() as lease, pytest.raises(MediaFetchTimeout) as raised:
        lease.get(url)
    assert time.monotonic() - started < 8  # two attempts of ~0.5 s (the whole body would take 32 s)
    assert "stalled" in str(raised.value) and "min_transfer_rate" in str(raised.value)
    assert http_server.count("stall/trickle.bin") == 2


def test_a_silent_server_is_cut_off_before_its_headers(http_server: FaultServer, tmp_path: Path) -> None:
    url = http_server.put("stall/silent.bin", b"late")
    http_server.set_fault("stall/silent.bin", latency=5.0)
    settings = _settings(tmp_path, request_timeout=0.5, max_retries=1)
    started = time.monotonic()
    with FileCache(settings) as cache, cache.lease() as lease, pytest.raises(MediaFetchTimeout, match="headers"):
        lease.get(url)
    assert time.monotonic() - started < 4  # two attempts of 0.5 s, not two of 5 s
    assert http_server.count("stall/silent.bin") == 2


# -- 7. a damaged cached file is dropped and fetched again ----------------------------------------


@pytest.mark.parametrize("validation", ["never", "etag"])
def test_a_truncated_cached_file_is_fetched_again(http_server: FaultServer, tmp_path: Path, validation: str) -> None:
    data = os.urandom(50 * KB)
    url = http_server.put(f"damage/{validation}.bin", data)
    settings = _settings(tmp_path, cache_validation=validation)
    with FileCache(settings) as cache:
        with cache.lease() as lease:
            path = lease.get(url)
        path.write_bytes(data[:1000])  # truncated behind the cache's back
        with cache.lease() as lease:
            assert lease.get(url).read_bytes() == data
        with FileCache(settings) as other, other.lease() as lease:  # another process's view: the index
            assert lease.get(url).read_bytes() == data
        assert http_server.count(f"damage/{validation}.bin") == 2
        assert cache.verify().clean


def test_prune_drops_damaged_entries(http_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(20 * KB)
    url = http_server.put("damage/pruned.bin", data)
    with FileCache(_settings(tmp_path)) as cache:
        with cache.lease() as lease:
            lease.get(url).write_bytes(b"short")
        cache.prune()
        assert cache.info().entries == 0
        with cache.lease() as lease:
            assert lease.get(url).read_bytes() == data


def test_cache_verify_finds_rewritten_content(
    http_server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = {http_server.put(f"verify/{i}.bin", os.urandom(10 * KB)): i for i in range(4)}
    settings = _settings(tmp_path)
    with FileCache(settings) as cache, cache.lease() as lease:
        paths = [lease.get(url) for url in objects]
    assert main(["--home", str(tmp_path), "cache", "verify"]) == 0
    assert "checked 4 entries (4 by content hash): all intact" in capsys.readouterr().out
    paths[1].write_bytes(os.urandom(10 * KB))  # same size, other bytes: only the hash can tell
    assert main(["--home", str(tmp_path), "cache", "verify"]) == 1
    assert "1 damaged, removed" in capsys.readouterr().out
    with FileCache(settings) as cache:
        assert cache.info().entries == 3
        with cache.lease() as lease:
            assert lease.get(list(objects)[1]).read_bytes() == (http_server.root / "verify/1.bin").read_bytes()
        assert cache.verify().clean


# -- 10. private files -------------------------------------------------------------------------


def test_home_catalog_and_index_are_private(tmp_path: Path) -> None:
    import mediatable as mt

    home = tmp_path / "new-home"
    mt.init(home=home, quiet=True)
    mt.create_table("t", {"n": mt.Int})
    assert home.stat().st_mode & 0o777 == 0o700
    for name in ("catalog.db", "file_cache/index.db"):
        assert (home / name).stat().st_mode & 0o777 == 0o600, name
    for wal in home.rglob("*-wal"):
        assert wal.stat().st_mode & 0o077 == 0, wal


# -- read: reconcile never deletes a file between its rename and its index row -----------------------


def test_reconcile_spares_a_file_whose_download_holds_the_entry_lock(http_server: FaultServer, tmp_path: Path) -> None:
    url = http_server.put("reconcile/a.jpg", b"published soon")
    with FileCache(_settings(tmp_path)) as cache:
        with cache.lease() as lease:
            path = lease.get(url)
        digest = path.name[:64]
        sqlite3.connect(cache.directory / "index.db", isolation_level=None).execute("DELETE FROM entries")
        locks = EntryLocks(cache.directory)
        held = locks.acquire(digest)  # a downloader between rename and index write holds this
        try:
            assert cache.prune().orphans == 0
            assert path.exists()
        finally:
            locks.release(held, digest)
        assert cache.prune().orphans == 1 and not path.exists()


# -- read: ownership by kernel locks, not pids -----------------------------------------------------


_CHILD_IN_PID_NAMESPACE = """
import sys
from pathlib import Path
from mediatable.config import load_settings
from mediatable.io.cache import FileCache
cache = FileCache(load_settings(Path(sys.argv[1]), environ={}, progress=False, retry_backoff=0.01))
with cache.lease() as lease:
    print("started", flush=True)
    lease.get(sys.argv[2])
"""


def test_leftovers_of_a_process_in_another_pid_namespace_are_swept(http_server: FaultServer, tmp_path: Path) -> None:
    """A child in its own pid namespace is pid 1 there, alive here too (init): its pid tells nothing.

    SIGKILLed mid-download, its temp file and reserved space must go when the next cache opens.
    """
    data = os.urandom(1024 * KB)
    url = http_server.put("pidns/large.bin", data)
    http_server.set_fault("pidns/large.bin", slow_body=0.05)
    home = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", _CHILD_IN_PID_NAMESPACE, str(home), url],
        stdout=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + CHILD_START_SECONDS
        parts: list[Path] = []
        while time.monotonic() < deadline and not parts:
            time.sleep(0.05)
            parts = list((home / "file_cache" / "tmp").glob("*.part")) if (home / "file_cache" / "tmp").exists() else []
        assert parts, "the child never started its download"
        os.kill(child.pid, signal.SIGKILL)  # --kill-child: the namespace's processes die with it
        child.wait(timeout=10)
        time.sleep(0.5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    with FileCache(_settings(home)) as cache:
        assert not any(part.exists() for part in parts)
        assert cache.info().in_flight_bytes == 0


def _child_hit_and_hold(
    home: str, url: str, ready: multiprocessing.Event, done: multiprocessing.Event, out: multiprocessing.Queue
) -> None:
    with FileCache(_settings(Path(home))) as cache, cache.lease() as lease:
        path = lease.get(url)  # a hit: the file is in the cache already
        ready.set()
        done.wait(CHILD_START_SECONDS)
        out.put(path.read_bytes())


def test_a_hit_in_another_process_is_pinned_at_once(http_server: FaultServer, tmp_path: Path) -> None:
    """Before: a hit's pin reached the index a second later; a clear in that second deleted the file."""
    data = os.urandom(10 * KB)
    url = http_server.put("pins/hit.bin", data)
    with FileCache(_settings(tmp_path)) as cache:
        with cache.lease() as lease:
            lease.get(url)
        context = multiprocessing.get_context("spawn")
        ready, done, out = context.Event(), context.Event(), context.Queue()
        child = context.Process(target=_child_hit_and_hold, args=(str(tmp_path), url, ready, done, out))
        child.start()
        try:
            assert ready.wait(CHILD_START_SECONDS)
            cleared = cache.clear()
            assert cleared.entries == 0 and cache.info().pinned == 1
            done.set()
            assert out.get(timeout=30) == data
        finally:
            done.set()
            _stop([child])
        assert cache.clear().entries == 1


# -- read: get() paths last until the lease closes ----------------------------------------------------


def test_paths_from_get_stay_valid_until_the_lease_closes(http_server: FaultServer, tmp_path: Path) -> None:
    objects = {http_server.put(f"valid/{i}.bin", os.urandom(10 * KB)): i for i in range(8)}
    with FileCache(_settings(tmp_path, cache_size=100 * KB)) as cache, cache.lease() as lease:
        paths = {url: lease.get(url) for url in objects}  # 80 KB: past half the budget
        with cache.lease() as other:
            for i in range(20):
                other.get(http_server.put(f"valid/other{i}.bin", os.urandom(10 * KB)))
        for url, path in paths.items():
            assert path.read_bytes() == (http_server.root / f"valid/{objects[url]}.bin").read_bytes()


# -- read: a new version never overwrites a file a lease reads -----------------------------------------


def test_an_etag_download_of_a_new_version_leaves_the_old_file_to_its_reader(
    http_server: FaultServer, tmp_path: Path
) -> None:
    url = http_server.put("versions/doc.pdf", b"version 1")
    with FileCache(_settings(tmp_path, cache_validation="etag")) as cache:
        with cache.lease() as reader:
            old = reader.get(url)
            http_server.put("versions/doc.pdf", b"version 2, longer")
            with cache.lease() as lease:
                new = lease.get(url)
                assert new.read_bytes() == b"version 2, longer"
            assert new != old and old.read_bytes() == b"version 1"
        assert not old.exists() or cache.prune().orphans == 1
        assert not old.exists()
        assert cache.verify().clean and cache.info().entries == 1


# -- read: the index writer survives anything; operations are all or nothing -------------------------


def test_index_writer_survives_failures_and_rolls_back_partial_operations(tmp_path: Path) -> None:
    failures = iter([RuntimeError("bookkeeping bug")])

    def background(db: sqlite3.Connection) -> bool:
        for failure in failures:
            raise failure
        return False

    index = CacheIndex(tmp_path / "index.db", background)
    try:

        def half_done(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO owners VALUES ('half', 1, 0)")
            raise KeyError("after the first statement")

        with pytest.raises(KeyError):
            index.submit(half_done).result(timeout=10)  # (before: the writer had died; this hung)
        index.submit(lambda db: db.execute("INSERT INTO owners VALUES ('whole', 1, 0)")).result(timeout=10)
        assert index.read("SELECT owner FROM owners") == [("whole",)]
        assert index.submit(lambda db: 42).result(timeout=10) == 42  # the writer still runs
    finally:
        index.close()


# -- read: a failed publish gives its reservation back ----------------------------------------------------


def test_a_failed_publish_returns_its_reserved_space(http_server: FaultServer, tmp_path: Path) -> None:
    url = http_server.put("publish/refused.bin", os.urandom(20 * KB))
    with FileCache(_settings(tmp_path, cache_size=1024 * KB)) as cache:
        db = sqlite3.connect(cache.directory / "index.db", isolation_level=None)
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON entries WHEN NEW.url LIKE '%refused%'"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        with cache.lease() as lease:
            lease.get(url)
        deadline = time.monotonic() + 5
        while cache.info().in_flight_bytes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.info().in_flight_bytes == 0
        db.close()


# -- read: the media store moves only its own temp outputs ---------------------------------------------


def test_media_store_never_moves_cached_files(http_server: FaultServer, tmp_path: Path) -> None:
    """A home under the temp folder (as here): a function returning a cached file's path must not move it."""
    from mediatable.io.media_store import MediaStore, new_output_file

    url = http_server.put("store/frame.jpg", b"cached bytes")
    with FileCache(_settings(tmp_path)) as cache, cache.lease() as lease:
        cached = lease.get(url)
        store = MediaStore(tmp_path / "media")
        saved = store.save(cached, 1, "copy")
        assert cached.read_bytes() == b"cached bytes"  # still there: copied, not moved
        assert cache.verify().clean
    output = new_output_file(".jpg")
    Path(output).write_bytes(b"made by a function")
    moved = store.save(output, 1, "clip")
    assert not Path(output).exists() and moved != saved


# -- 11 and issue 8: one entry per object --------------------------------------------------------------


def test_spellings_and_signatures_of_one_object_share_one_entry(http_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(5 * KB)
    url = http_server.put("keys/p/a.jpg", data)
    spellings = [
        url,
        http_server.url("keys/p/x/../a.jpg"),
        http_server.url("keys/p/./a.jpg"),
        url + "?X-Amz-Date=20260101T000000Z&X-Amz-Signature=one",
        url + "?X-Amz-Date=20260102T000000Z&X-Amz-Signature=two",
        url + "?sv=2023-11-03&se=2026-01-01&sp=r&sig=three",
    ]
    with FileCache(_settings(tmp_path)) as cache, cache.lease() as lease:
        paths = {lease.get(spelling) for spelling in spellings}
        assert len(paths) == 1 and paths.pop().read_bytes() == data
        other = lease.get(url + "?v=2")  # another query parameter: another object (tokenized URLs work)
    assert http_server.count("keys/p/a.jpg") == 2
    first = http_server.requests("keys/p/a.jpg")[0]
    assert first.query == ""  # downloads use the URL as given (signature and all)
    with FileCache(_settings(tmp_path)) as cache:
        assert cache.info().entries == 2 and other.exists()
    index = sqlite3.connect(tmp_path / "file_cache" / "index.db")
    assert not [url for (url,) in index.execute("SELECT url FROM entries") if "Signature" in url or "sig=" in url]


def test_the_download_of_a_signed_url_sends_its_signature(http_server: FaultServer, tmp_path: Path) -> None:
    url = http_server.put("keys/signed.jpg", b"signed")
    signed = url + "?X-Amz-Signature=abc123&X-Amz-Date=20260101T000000Z"
    with FileCache(_settings(tmp_path)) as cache, cache.lease() as lease:
        assert lease.get(signed).read_bytes() == b"signed"
    (request,) = http_server.requests("keys/signed.jpg")
    assert "X-Amz-Signature=abc123" in request.query


def test_metadata_and_disallowed_urls_are_refused_without_a_request(http_server: FaultServer, tmp_path: Path) -> None:
    from mediatable.errors import MediaAccessDenied

    url = http_server.put("policy/a.jpg", b"x")
    with FileCache(_settings(tmp_path)) as cache, cache.lease() as lease:
        with pytest.raises(MediaAccessDenied, match="link-local"):
            lease.get("http://169.254.169.254/latest/meta-data/iam/security-credentials/")
        (refused,) = lease.get_many(["http://169.254.169.254/latest/user-data"])
        assert isinstance(refused, MediaAccessDenied)
    strict = _settings(tmp_path, allow_private_addresses=False, allowed_schemes="http,https")
    with FileCache(strict) as cache, cache.lease() as lease:
        with pytest.raises(MediaAccessDenied, match="private"):
            lease.get(url)
        with pytest.raises(MediaAccessDenied, match="private"):
            lease.get(url.replace("127.0.0.1", "localhost"))  # resolved before downloading
        with pytest.raises(MediaAccessDenied, match="scheme"):
            lease.get(str(tmp_path / "local.jpg"))
    assert http_server.count() == 0


# -- close() while other threads open leases; per-lease memories stay bounded ---------------------
def test_close_racing_new_leases_leaves_none_open(http_server: FaultServer, tmp_path: Path) -> None:
    url = http_server.put("race/a.jpg", os.urandom(4 * KB))
    for _ in range(5):
        cache = FileCache(_settings(tmp_path))
        opened: list = []
        refused = threading.Event()

        def open_leases(cache: FileCache = cache, opened: list = opened, refused: threading.Event = refused) -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    lease = cache.lease()
                except CacheError:
                    refused.set()
                    return
                opened.append(lease)
                with contextlib.suppress(CacheError):
                    lease.get(url)

        threads = [threading.Thread(target=open_leases) for _ in range(3)]
        for thread in threads:
            thread.start()
        while len(opened) < 6:
            time.sleep(0.001)
        cache.close()
        for thread in threads:
            thread.join(timeout=30)
        assert refused.is_set() and not any(t.is_alive() for t in threads)
        assert all(lease._holding.closed for lease in opened)  # every lease the cache handed out is closed
        assert not list((tmp_path / "file_cache" / "leases").glob("*/*"))  # and left no private files


def test_work_given_to_a_closed_transfer_stage_is_refused_and_closed() -> None:
    # A lease racing the cache's close hands its download to the closed stage: the coroutine was left
    # unclosed, and warned that it was never awaited (the test above failed so now and then).
    stage = TransferStage(concurrency=1, policy=RetryPolicy())
    stage.submit(asyncio.sleep(0, "ran")).result(timeout=10)
    stage.close()
    work = asyncio.sleep(0)
    with pytest.raises(CacheError, match="the transfer stage is closed"):
        stage.submit(work)
    assert inspect.getcoroutinestate(work) == inspect.CORO_CLOSED


def test_a_long_lease_remembers_a_bounded_number_of_urls(http_server: FaultServer, tmp_path: Path) -> None:
    urls = [http_server.put(f"many/{i}.bin", b"x") for i in range(300)]
    with FileCache(_settings(tmp_path)) as cache, cache.lease() as lease:
        lease._holding._seen._limit = 100  # the default (100,000) scaled down for the test
        for url in urls:
            lease.get(url)
        assert len(lease._holding._seen._members) == 100
