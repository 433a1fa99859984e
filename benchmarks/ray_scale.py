"""Computed columns on Ray workers: scaling of a CPU-bound UDF, and a cold remote-image pass.

Both passes run on a local Ray cluster of 2 CPUs started by this script (`ray.init(num_cpus=2)`),
with the actors started before timing (each session computes a small column on Ray first):

- udf: a pure-Python UDF of ~20 ms CPU per row over 2,000 rows (`--rows`),
  `add_computed_column(executor='ray')` with `ray_workers=1` against `ray_workers=2`, median of
  `--repeats`. Target >= 1.6x on 2 cores. Baseline in the same run: the same function over the same
  rows in a bare `multiprocessing` pool of 1 and of 2 processes (what the machine gives right now).
- cold: `add_computed_column(w=t.image.width)` over 1,000 remote JPEGs of ~80 KB (20 ms latency per
  request, the server of cold_warm.py), with an empty file cache each time: 2 Ray workers against
  the local executor in the same run.

Ray is kept offline (`RAY_USAGE_STATS_ENABLED=0`, `RAY_AUTH_MODE=disabled`, no dashboard). The load
average is printed: other work on the same cores skews every ratio.
Run: `.venv/bin/python benchmarks/ray_scale.py [--rows N] [--repeats R]` (needs `mediatable[ray]`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray
from cold_warm import remote_images
from compute import load, timed

import mediatable as mt

SPIN_SECONDS = 0.020


def _spin(seconds: float) -> int:
    end = time.thread_time() + seconds
    count = 0
    while time.thread_time() < end:  # pure Python: holds the GIL, ~20 ms of CPU per row
        count += 1
    return count


@mt.udf
def python_20ms(n: int) -> int:
    return _spin(SPIN_SECONDS) * 0 + n


def session(home: Path, **settings: object) -> mt.Session:
    """A session whose Ray actors are up (a small column computed on Ray first)."""
    s = mt.init(home=home, quiet=True, progress=False, **settings)
    with contextlib.redirect_stdout(io.StringIO()):
        warm = mt.create_table("warm", {"n": mt.Int}, if_exists="replace")
    warm.insert([{"n": n} for n in range(64)], quiet=True)
    warm.add_computed_column(m=warm.n + 1, executor="ray", quiet=True)
    return s


def numbers(count: int) -> mt.Table:
    with contextlib.redirect_stdout(io.StringIO()):
        t = mt.create_table("nums", {"n": mt.Int}, if_exists="replace")
    t.insert([{"n": n} for n in range(count)], quiet=True)
    return t


def bare_pass(rows: int, repeats: int) -> dict[int, list[float]]:
    """The UDF's function over `rows` values in a started pool of 1 and of 2 processes."""
    times: dict[int, list[float]] = {1: [], 2: []}
    for processes in (1, 2):
        with multiprocessing.get_context("forkserver").Pool(processes) as pool:
            pool.map(_spin, [0.001] * processes)  # started
            for _ in range(repeats):
                times[processes].append(timed(lambda p=pool: p.map(_spin, [SPIN_SECONDS] * rows, chunksize=8)))
    return times


def udf_pass(work: Path, rows: int, repeats: int) -> dict[int, list[float]]:
    times: dict[int, list[float]] = {1: [], 2: []}
    for workers in (1, 2):
        session(work / f"udf{workers}", ray_workers=workers)
        t = numbers(rows)
        for attempt in range(repeats):
            times[workers].append(
                timed(lambda a=attempt, t=t: t.add_computed_column(**{f"u{a}": python_20ms(t.n)}, executor="ray"))
            )
        mt.api._current[-1].close()
    return times


def cold_pass(work: Path, urls: list[str], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for attempt in range(repeats):
        for executor in ("local", "ray"):
            home = work / f"cold-{executor}{attempt}"  # an empty file cache each time
            session(home, ray_workers=2)
            with contextlib.redirect_stdout(io.StringIO()):
                t = mt.create_table("images", {"image": mt.Image})
            t.insert([{"image": u} for u in urls], quiet=True)
            times[executor].append(timed(lambda t=t, e=executor: t.add_computed_column(w=t.image.width, executor=e)))
            assert t.where(t.w > 0).count() == len(urls), "every width computed"
            mt.api._current[-1].close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mt-bench-ray-"))
    print(f"load average before: {load()}  ({os.cpu_count()} cores)")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", configure_logging=False)
    try:
        bare = bare_pass(args.rows, args.repeats)
        udf = udf_pass(work, args.rows, args.repeats)
        with remote_images() as remote:
            cold = cold_pass(work, remote.urls, args.repeats)
    finally:
        ray.shutdown()
    print(f"load average after: {load()}")

    one, two = statistics.median(udf[1]), statistics.median(udf[2])
    bare_one, bare_two = statistics.median(bare[1]), statistics.median(bare[2])
    local, on_ray = statistics.median(cold["local"]), statistics.median(cold["ray"])
    n = len(remote.urls)
    print(f"\n{'pass':58} {'seconds':>8} {'rows/s':>9}")
    for name, seconds, count in [
        ("bare multiprocessing pool, 1 process", bare_one, args.rows),
        ("bare multiprocessing pool, 2 processes", bare_two, args.rows),
        (f"{SPIN_SECONDS * 1000:.0f} ms/row Python UDF, executor='ray', 1 worker", one, args.rows),
        (f"{SPIN_SECONDS * 1000:.0f} ms/row Python UDF, executor='ray', 2 workers", two, args.rows),
        ("cold width pass, local executor", local, n),
        ("cold width pass, executor='ray', 2 workers", on_ray, n),
    ]:
        print(f"{name:58} {seconds:8.2f} {count / seconds:9,.0f}")
    print(f"\nUDF, 2 Ray workers vs 1: {one / two:.2f}x (target >= 1.6x)")
    print(f"baseline, 2 bare processes vs 1: {bare_one / bare_two:.2f}x")
    print(f"UDF, 2 Ray workers vs 1 bare process: {bare_one / two:.2f}x")
    print(f"cold pass, 2 Ray workers vs the local executor: {local / on_ray:.2f}x the throughput")
    print(f"runs: udf 1 worker {[round(x, 2) for x in udf[1]]}, 2 workers {[round(x, 2) for x in udf[2]]}")
    print(f"runs: cold local {[round(x, 2) for x in cold['local']]}, ray {[round(x, 2) for x in cold['ray']]}")


if __name__ == "__main__":
    main()
