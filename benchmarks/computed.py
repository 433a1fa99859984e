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
import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cold_warm import CONCURRENCY, LATENCY, N, bare_loop, make_images, serve

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
    work = Path(tempfile.mkdtemp(prefix="mt-bench-computed-"))
    context = multiprocessing.get_context("spawn")
    stop, ready = context.Event(), context.Queue()
    server = None
    cores = os.cpu_count() or 1
    try:
        images = work / "images"
        images.mkdir()
        total_bytes = make_images(images, N)
        server = context.Process(target=serve, args=(str(images), LATENCY, ready, stop), daemon=True)
        server.start()
        base = ready.get(timeout=30)
        names = [f"img{i:04d}.jpg" for i in range(N)]
        urls = [f"{base}/{name}" for name in names]

        bare_times = []
        for attempt in range(2):
            out = work / f"bare{attempt}"
            out.mkdir()
            bare_times.append(measure(lambda out=out: bare_loop(base, names, out))[0])
        bare = statistics.median(bare_times)

        table = fresh_table(work / "home-width", urls)
        cold_width = measure(lambda: table.add_computed_column(width=table.image.width))
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
        print(f"cold width / ideal                            {cold_width[0] / ideal:.2f}x")
        print(
            f"cold resize CPU use                           {cold_resize[1] / cold_resize[0] / cores:.0%} of "
            f"{cores} cores; warm {warm_resize[1] / warm_resize[0] / cores:.0%}"
        )
    finally:
        stop.set()
        if server is not None:
            server.join(timeout=10)
            if server.is_alive():
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
