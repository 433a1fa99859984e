"""Pinning many cached files: the cost per pin as a lease holds more, against one lock file.

A lease pins every file it hands out with a shared kernel byte-range lock (evictors in every process
respect it; it dies with its process). The kernel keeps one list of each file's locks and checks a
new lock against all of them, so with every pin in one lock file, the N-th pin costs O(N): a warm
pass over 20,000 small files spent seconds just pinning. mediatable spreads pins over 256 lock files
by key. Measured in the same run, per pin, at 1,000 / 5,000 / 20,000 held pins:

- mediatable: `LockSet(folder, "pins").add(key, shared=True)` (sharded lock files);
- baseline: the same `F_OFD_SETLK` read locks, all on one file (what mediatable did before).

Then releasing them all (`remove_many`). Target: the cost per pin stays flat as the count grows
(20,000 / 1,000 within 2x), where the single file grows linearly.

Run: `.venv/bin/python benchmarks/pins.py` (Linux: open-file-description locks).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import tempfile
import time
from pathlib import Path

from mediatable.io.cache.locks import LockSet

COUNTS = (1_000, 5_000, 20_000)


def keys(n: int) -> list[str]:
    return [hashlib.sha256(f"https://bucket/{i}.jpg".encode()).hexdigest() for i in range(n)]


def sharded(locks: LockSet, batch: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    for key in batch:
        locks.add(key, shared=True)
    added = time.perf_counter() - start
    start = time.perf_counter()
    locks.remove_many(batch)
    removed = time.perf_counter() - start
    return added, removed


def one_file(folder: Path, batch: list[str]) -> float:
    fd = os.open(folder / "single.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        start = time.perf_counter()
        for key in batch:
            fcntl.fcntl(
                fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, int(key[:15], 16), 1, 0)
            )
        return time.perf_counter() - start
    finally:
        os.close(fd)


def main() -> None:
    if not hasattr(fcntl, "F_OFD_SETLK"):
        raise SystemExit("open-file-description locks are Linux only")
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}  ({os.cpu_count()} cores)")
    folder = Path(tempfile.mkdtemp(prefix="mt-bench-pins-"))
    print(f"{'pins held':>10} {'sharded us/pin':>15} {'one file us/pin':>16} {'ratio':>7} {'release us/pin':>15}")
    per_pin = {}
    locks = LockSet(folder, "pins")  # one per cache and process, as a cache's pins are
    sharded(locks, keys(2_000))  # opens the lock files (once per process), not timed
    for n in COUNTS:
        batch = keys(n)
        added, removed = sharded(locks, batch)
        single = one_file(folder, batch)
        per_pin[n] = added / n
        us = [added / n * 1e6, single / n * 1e6]
        print(f"{n:>10,} {us[0]:>15.1f} {us[1]:>16.1f} {single / added:>6.1f}x {removed / n * 1e6:>15.1f}")
    locks.close()
    growth = per_pin[COUNTS[-1]] / per_pin[COUNTS[0]]
    print(f"cost per pin at {COUNTS[-1]:,} vs {COUNTS[0]:,} held: {growth:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
