"""Computed columns over 1,000 remote images: cold and warm, metadata-only and decode-heavy.

Setup (shared with cold_warm.py): 1,000 JPEGs of ~80 KB behind the test HTTP server, in its own
process, with 20 ms latency per request. Each pass is `t.add_computed_column(...)` over all rows:

- `width`  (header read only) cold — empty cache — and warm;
- `resize((224, 224))` (full decode, resize, JPEG encode of the result) cold and warm, with the
  process's CPU use (user + system seconds / wall seconds / cores) to show both cores busy.

Baselines in the same run: the bare obstore download loop at the same concurrency (the practical
limit of this server here) and the ideal N * latency / concurrency.
Targets: cold `width` runs at >= 90% of the bare loop's throughput; decode-heavy passes keep the cores busy.
Run: `.venv/bin/python benchmarks/computed.py`.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from cold_warm import CONCURRENCY, LATENCY, REPEATS, N, bare_loop, remote_images

import mediatable as mt


def measure(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fresh_table(home: Path, urls: list[str]) -> mt.Table:
    mt.init(home=home, quiet=True, max_concurrent_downloads=CONCURRENCY, progress=False)
    with contextlib.redirect_stdout(io.StringIO()):
        table = mt.create_table("bench", {"image": mt.Image, "n": mt.Int})
    table.insert([{"image": url, "n": i} for i, url in enumerate(urls)], quiet=True)
    return table


def main() -> None:
    cores = os.cpu_count() or 1
    with remote_images() as remote:
        work, base, names, urls, total_bytes = remote.work, remote.base, remote.names, remote.urls, remote.total_bytes

        # bare and cold alternate, so both see the same machine state; medians of REPEATS
        bare_times, cold_runs = [], []
        for attempt in range(REPEATS):
            out = work / f"bare{attempt}"
            out.mkdir()
            bare_times.append(measure(lambda out=out: bare_loop(base, names, out))[0])
            table = fresh_table(work / f"home-width{attempt}", urls)
            cold_runs.append(measure(lambda table=table: table.add_computed_column(width=table.image.width)))
        bare = statistics.median(bare_times)
        cold_width = sorted(cold_runs)[len(cold_runs) // 2]
        warm_width = measure(lambda: table.add_computed_column(width_again=table.image.width))
        assert table.where(table.width == 376).count() == N

        table = fresh_table(work / "home-resize", urls)
        cold_resize = measure(lambda: table.add_computed_column(small=table.image.resize((224, 224))))
        warm_resize = measure(lambda: table.add_computed_column(small_again=table.image.resize((224, 224))))
        assert table.where(table.small.width == 224).count() == N

        ideal = N * LATENCY / CONCURRENCY
        print(
            f"{N} images, {total_bytes / N / 1024:.0f} KiB each, {LATENCY * 1000:.0f} ms latency, "
            f"{CONCURRENCY} downloads in flight, {cores} cores"
        )
        print(f"{'pass':38} {'seconds':>8} {'rows/s':>9} {'CPU use':>8}")
        print(f"{'ideal N*L/C':38} {ideal:8.3f} {N / ideal:9,.0f}")
        print(f"{'bare obstore download loop':38} {bare:8.3f} {N / bare:9,.0f}")
        for name, (wall, cpu) in [
            ("cold add_computed_column(width)", cold_width),
            ("warm add_computed_column(width)", warm_width),
            ("cold add_computed_column(resize)", cold_resize),
            ("warm add_computed_column(resize)", warm_resize),
        ]:
            print(f"{name:38} {wall:8.3f} {N / wall:9,.0f} {cpu / wall / cores:8.0%}")
        print(f"\ncold width throughput / bare loop throughput  {bare / cold_width[0]:.0%}   (target >= 90%)")
        print(
            f"cold width runs {', '.join(f'{w:.3f}' for w, _ in cold_runs)}; bare runs "
            f"{', '.join(f'{t:.3f}' for t in bare_times)}"
        )
        print(f"cold width / ideal                            {cold_width[0] / ideal:.2f}x")
        print(
            f"cold resize CPU use                           {cold_resize[1] / cold_resize[0] / cores:.0%} of "
            f"{cores} cores; warm {warm_resize[1] / warm_resize[0] / cores:.0%}"
        )


if __name__ == "__main__":
    main()
