"""Cold and warm passes over 1,000 remote JPEGs through the file cache, against baselines.

Setup: 1,000 JPEGs of ~80 KB (random noise, so they do not compress away) behind the test HTTP
server (tests/servers/http.py, run in its own process) with 20 ms of latency per request.

Measured, each reading the image width (`PIL.Image.open(path).width`, a header read) for every URL:

- cold: an empty :class:`~mediatable.io.cache.FileCache`, `lease.get_many(urls)` (32 downloads in flight);
- warm: the same cache again, through `get_many` and through one `lease.get(url)` per row, and from a
  freshly opened cache object (index lookups instead of the in-process memo);
- bare: obstore `get_async` over the same URLs at the same concurrency, writing files (no cache);
- sequential: one `obstore.get` after the other for the first 100 URLs, extrapolated to 1,000;
- ideal: N · latency / concurrency (DESIGN.md §5).

Targets: cold <= 1.25 x bare; warm >= 20,000 rows/s. Run: `.venv/bin/python benchmarks/cold_warm.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import obstore
import PIL.Image
from obstore.store import HTTPStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from mediatable.config import load_settings
from mediatable.io.cache import FileCache
from servers.http import FaultServer

N = 1000
LATENCY = 0.020
CONCURRENCY = 32
SEQUENTIAL_SAMPLE = 100
REPEATS = 3


def make_images(folder: Path, count: int) -> int:
    """Write `count` noisy JPEGs of ~80 KB; return their total size."""
    total = 0
    for i in range(count):
        image = PIL.Image.frombytes("RGB", (376, 282), os.urandom(376 * 282 * 3))
        path = folder / f"img{i:04d}.jpg"
        image.save(path, quality=85)
        total += path.stat().st_size
    return total


def serve(root: str, latency: float, ready: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    """Run the test server in its own process, so it does not share a GIL with the client."""
    with FaultServer(root) as server:
        server.set_fault(None, latency=latency)
        ready.put(server.base_url)
        stop.wait()


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def bare_loop(base: str, names: list[str], out: Path) -> None:
    """The floor: obstore's async API, CONCURRENCY requests in flight, each body written to a file."""
    store = HTTPStore.from_url(base, client_options={"allow_http": True, "timeout": "60s"})

    async def main() -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(name: str) -> None:
            async with gate:
                result = await obstore.get_async(store, name)
                with open(out / name, "wb") as file:
                    async for chunk in result.stream(min_chunk_size=1 << 20):
                        file.write(chunk)

        await asyncio.gather(*(one(name) for name in names))

    asyncio.run(main())


def sequential_loop(base: str, names: list[str], out: Path) -> None:
    store = HTTPStore.from_url(base, client_options={"allow_http": True, "timeout": "60s"})
    for name in names:
        with open(out / name, "wb") as file:
            for chunk in obstore.get(store, name).stream(min_chunk_size=1 << 20):
                file.write(chunk)


def widths_get_many(cache: FileCache, urls: list[str]) -> list[int]:
    with cache.lease() as lease:
        widths = []
        for path in lease.get_many(urls):
            assert isinstance(path, Path), path
            widths.append(PIL.Image.open(path).width)
        return widths


def widths_get(cache: FileCache, urls: list[str]) -> list[int]:
    with cache.lease() as lease:
        return [PIL.Image.open(lease.get(url)).width for url in urls]


@dataclasses.dataclass
class RemoteImages:
    """N generated JPEGs served over HTTP from another process; `work` is a scratch folder."""

    work: Path
    base: str
    names: list[str]
    total_bytes: int

    @property
    def urls(self) -> list[str]:
        return [f"{self.base}/{name}" for name in self.names]


@contextlib.contextmanager
def remote_images(count: int = N, latency: float = LATENCY) -> Iterator[RemoteImages]:
    """Generate `count` JPEGs, serve them with `latency` per request; stop the server and clean up after."""
    work = Path(tempfile.mkdtemp(prefix="mt-bench-"))
    context = multiprocessing.get_context("spawn")
    stop, ready = context.Event(), context.Queue()
    server = None
    try:
        images = work / "images"
        images.mkdir()
        started = time.perf_counter()
        total_bytes = make_images(images, count)
        print(
            f"generated {count} JPEGs, {total_bytes / count / 1024:.1f} KiB each, in "
            f"{time.perf_counter() - started:.1f} s"
        )
        server = context.Process(target=serve, args=(str(images), latency, ready, stop), daemon=True)
        server.start()
        base = ready.get(timeout=30)
        yield RemoteImages(work, base, [f"img{i:04d}.jpg" for i in range(count)], total_bytes)
    finally:
        stop.set()
        if server is not None:
            server.join(timeout=10)
            if server.is_alive():
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    with remote_images() as remote:
        work, base, names, urls = remote.work, remote.base, remote.names, remote.urls

        bare_times, cold_times = [], []
        warm_many = warm_get = warm_reopened = 0.0
        for attempt in range(REPEATS):
            out = work / f"bare{attempt}"
            out.mkdir()
            bare_times.append(timed(lambda out=out: bare_loop(base, names, out)))
            home = work / f"home{attempt}"
            settings = load_settings(home, environ={}, max_concurrent_downloads=CONCURRENCY, progress=False)
            with FileCache(settings) as cache:
                cold_times.append(timed(lambda cache=cache: widths_get_many(cache, urls)))
                assert cache.info().entries == N and cache.info().misses == N
                if attempt == REPEATS - 1:
                    widths_get_many(cache, urls)  # settle: page cache, memo
                    warm_many = min(timed(lambda cache=cache: widths_get_many(cache, urls)) for _ in range(5))
                    warm_get = min(timed(lambda cache=cache: widths_get(cache, urls)) for _ in range(5))
            if attempt == REPEATS - 1:
                with FileCache(settings) as reopened:
                    warm_reopened = min(timed(lambda c=reopened: widths_get_many(c, urls)) for _ in range(3))
                    assert reopened.info().misses == 0
        seq_out = work / "seq"
        seq_out.mkdir()
        sequential = timed(lambda: sequential_loop(base, names[:SEQUENTIAL_SAMPLE], seq_out)) * N / SEQUENTIAL_SAMPLE

        cold, bare = statistics.median(cold_times), statistics.median(bare_times)
        ideal = N * LATENCY / CONCURRENCY
        rows = [
            ("ideal N*L/C", ideal),
            ("bare obstore loop", bare),
            ("cold (FileCache.get_many + PIL width)", cold),
            ("sequential (extrapolated from 100)", sequential),
            ("warm get_many + PIL width", warm_many),
            ("warm lease.get + PIL width", warm_get),
            ("warm, reopened cache (index) + PIL", warm_reopened),
        ]
        print(f"\n{N} URLs, {LATENCY * 1000:.0f} ms latency, {CONCURRENCY} in flight (median of {REPEATS} cold/bare)")
        print(f"{'pass':42} {'seconds':>9} {'rows/s':>10}")
        for name, seconds in rows:
            print(f"{name:42} {seconds:9.3f} {N / seconds:10,.0f}")
        print(f"\ncold / bare       {cold / bare:.2f}x   (target <= 1.25x)")
        print(f"cold / ideal      {cold / ideal:.2f}x")
        print(f"sequential / cold {sequential / cold:.1f}x faster with the cache")
        print(f"warm rows/s       {N / warm_many:,.0f} get_many, {N / warm_get:,.0f} get   (target >= 20,000)")
        runs = "; ".join(
            f"{name} runs " + ", ".join(f"{t:.3f}" for t in times)
            for name, times in (("cold", cold_times), ("bare", bare_times))
        )
        print(runs)


if __name__ == "__main__":
    main()
