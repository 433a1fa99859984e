"""Stress: 8 processes share a cache one tenth the size of their working set while some are SIGKILLed.

Each worker reads every object of the working set (in its own random order, through `get_many` or
`get`) and checks every byte it was handed. The parent kills a random worker now and then and
starts another in its place, for a bounded time, then lets the last ones finish. At the end every
value every surviving worker read was right, and the cache verifies clean: index and files agree,
sizes and content hashes match, no reservation, temp file or lease folder of the dead is left.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

from mediatable.config import load_settings
from mediatable.io.cache import FileCache
from servers.http import FaultServer

KB = 1024
OBJECTS = 160
SIZE = 20 * KB
BUDGET = OBJECTS * SIZE // 10
WORKERS = 8
CHAOS_SECONDS = 12.0


def _settings(home: Path):  # type: ignore[no-untyped-def]
    return load_settings(home, environ={}, progress=False, retry_backoff=0.01, cache_size=BUDGET)


def _worker(home: str, expected: dict[str, str], seed: int, results: str) -> None:
    rng = random.Random(seed)
    order = list(expected)
    rng.shuffle(order)

    def wrong(url: str, path: object) -> bool:
        return not isinstance(path, Path) or hashlib.sha256(path.read_bytes()).hexdigest() != expected[url]

    with FileCache(_settings(Path(home))) as cache, cache.lease() as lease:
        if seed % 2:  # a scan: each file is used as it comes (its pin slides out of the window later)
            bad = [url for url, path in zip(order, lease.get_many(order), strict=True) if wrong(url, path)]
        else:  # paths from get() last until the lease closes: read them all at the end
            pairs = [(url, lease.get(url)) for url in order[: len(order) // 3]]
            bad = [url for url, path in pairs if wrong(url, path)]
    # A file, renamed into place: a worker killed while reporting leaves nothing half-written.
    report = Path(results) / f"{seed}.json"
    report.with_suffix(".tmp").write_text(json.dumps(bad))
    os.replace(report.with_suffix(".tmp"), report)


def test_eight_processes_small_budget_random_sigkills(http_server: FaultServer, tmp_path: Path) -> None:
    expected = {}
    for i in range(OBJECTS):
        data = os.urandom(SIZE)
        expected[http_server.put(f"stress/{i:04d}.jpg", data)] = hashlib.sha256(data).hexdigest()
    http_server.set_fault(None, latency=0.003)
    home = tmp_path / "shared"
    context = multiprocessing.get_context("spawn")
    results = tmp_path / "results"
    results.mkdir()
    rng = random.Random(1234)
    seeds = iter(range(10_000))
    running: dict[int, multiprocessing.process.BaseProcess] = {}

    def start() -> None:
        seed = next(seeds)
        process = context.Process(target=_worker, args=(str(home), expected, seed, str(results)))
        process.start()
        running[seed] = process

    outcomes: dict[int, list[str]] = {}
    killed = 0
    try:
        for _ in range(WORKERS):
            start()
        chaos_ends = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < chaos_ends:
            time.sleep(rng.uniform(0.2, 0.6))
            victim = rng.choice([seed for seed, p in running.items() if p.is_alive()] or [None])
            if victim is not None:
                os.kill(running[victim].pid, signal.SIGKILL)
                running.pop(victim).join(timeout=10)
                killed += 1
            for seed in [s for s, p in running.items() if not p.is_alive()]:
                running.pop(seed).join(timeout=10)
            while len(running) < WORKERS:
                start()
        deadline = time.monotonic() + 120  # the last generation finishes its pass
        while running and time.monotonic() < deadline:
            time.sleep(0.2)
            for seed in [s for s, p in running.items() if not p.is_alive()]:
                running.pop(seed).join(timeout=10)
        assert not running, f"workers still running after the deadline: {sorted(running)}"
        outcomes = {int(report.stem): json.loads(report.read_text()) for report in results.glob("*.json")}
    finally:
        for process in running.values():
            process.kill()
            process.join(timeout=10)

    assert killed >= 10
    assert len(outcomes) >= WORKERS  # at least the last generation completed
    assert {seed: bad for seed, bad in outcomes.items() if bad} == {}
    with FileCache(_settings(home)) as cache:
        verified = cache.verify()
        assert verified.clean and verified.hashed == verified.entries
        info = cache.info()
        assert info.bytes <= BUDGET and info.in_flight_bytes == 0 and info.pinned == 0
        cache_dir = cache.directory
        db = sqlite3.connect(cache_dir / "index.db")
        rows = db.execute("SELECT path, size FROM entries").fetchall()
        assert db.execute("SELECT entries, bytes FROM totals").fetchone() == (len(rows), sum(s for _, s in rows))
        db.close()
        files = sorted(f"{p.parent.name}/{p.name}" for p in cache_dir.glob("??/*"))
        assert files == sorted(path for path, _ in rows)
        assert not list((cache_dir / "tmp").iterdir()) and not list((cache_dir / "leases").iterdir())
