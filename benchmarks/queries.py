"""Queries and inserts at 100k rows, each against a raw `sqlite3` baseline measured in the same run.

- insert of 100k rows (an image URL + an int + a float): rows/s, and the ratio to a raw
  `sqlite3.executemany` of the same values (target: >= 200k rows/s), in wall time and in this
  process's CPU time (on a busy machine the wall time mostly measures waiting for a core);
- `collect()` and `to_pandas()` of 100k stored scalar rows vs a raw `fetchall()` + dict per row
  (target: within 2x);
- a filter pushed down to SQL (`t.n % 10 == 0`) vs the same query in raw SQL + dicts (target: within 1.5x);
- memory: `collect()` of 100k image rows (cached files) holds references, not bytes: the peak
  RSS growth per row, measured in a fresh process; and `iter_batches(1000)` over the same rows: its
  peak RSS growth stays bounded by a batch (compared with collect()'s).

Each timing is the median of REPEATS runs, taking turns with its baseline (the machine is shared);
the insert line also gives the best run. Run: `.venv/bin/python benchmarks/queries.py`.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import PIL.Image

import mediatable as mt

N = 100_000
REPEATS = 5


def timed(*runs: Callable[[], object], repeats: int = REPEATS) -> list[tuple[float, float, float]]:
    """For each run: the median wall time, the median CPU time of this process, the shortest wall time (seconds).

    The runs take turns, so a burst of load from the other jobs on the machine hits them alike.
    """
    walls: list[list[float]] = [[] for _ in runs]
    cpus: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start, cpu = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):
                run()
            walls[i].append(time.perf_counter() - start)
            cpus[i].append(time.process_time() - cpu)
    return [(statistics.median(w), statistics.median(c), min(w)) for w, c in zip(walls, cpus, strict=True)]


def rows() -> list[dict[str, object]]:
    return [{"image": f"https://images.example.com/photos/{i:06d}.jpg", "n": i, "x": i / 7} for i in range(N)]


def raw_db(folder: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(folder / "raw.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def bench_insert(folder: Path) -> None:
    data = rows()
    counter = iter(range(1000))

    def ours() -> None:
        t = mt.create_table(f"ins{next(counter)}", {"image": mt.Image, "n": mt.Int, "x": mt.Float})
        t.insert(data, quiet=True)

    def raw() -> None:
        conn = raw_db(folder)
        name = f"raw{next(counter)}"
        conn.execute(f"CREATE TABLE {name} (rowid INTEGER PRIMARY KEY, image TEXT, n INTEGER, x REAL)")
        with conn:
            conn.executemany(
                f"INSERT INTO {name} (image, n, x) VALUES (?, ?, ?)", [(r["image"], r["n"], r["x"]) for r in data]
            )
        conn.close()

    (ours_s, ours_cpu, ours_best), (raw_s, raw_cpu, raw_best) = timed(ours, raw)
    print(
        f"insert {N} rows, median of {REPEATS}: {N / ours_s:,.0f} rows/s "
        f"(raw sqlite3 executemany {N / raw_s:,.0f} rows/s, ratio {ours_s / raw_s:.2f}x; best runs "
        f"{N / ours_best:,.0f} vs {N / raw_best:,.0f} rows/s); "
        f"CPU time {N / ours_cpu:,.0f} rows/s vs raw {N / raw_cpu:,.0f} rows/s, ratio {ours_cpu / raw_cpu:.2f}x"
    )


def bench_reads(folder: Path) -> None:
    t = mt.create_table("reads", {"image": mt.Image, "n": mt.Int, "x": mt.Float})
    t.insert(rows(), quiet=True)
    conn = raw_db(folder)
    conn.execute("CREATE TABLE reads (rowid INTEGER PRIMARY KEY, image TEXT, n INTEGER, x REAL)")
    with conn:
        conn.executemany(
            "INSERT INTO reads (image, n, x) VALUES (?, ?, ?)", [(r["image"], r["n"], r["x"]) for r in rows()]
        )

    def raw_all() -> None:
        cursor = conn.execute("SELECT n, x FROM reads ORDER BY rowid")
        names = [d[0] for d in cursor.description]
        [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    def raw_filtered() -> None:
        cursor = conn.execute("SELECT n, x FROM reads WHERE n % 10 = 0 ORDER BY rowid")
        names = [d[0] for d in cursor.description]
        [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    timings = timed(
        raw_all,
        raw_filtered,
        lambda: list(t.select(t.n, t.x).collect()),
        lambda: t.select(t.n, t.x).to_pandas(),
        lambda: list(t.where(t.n % 10 == 0).select(t.n, t.x).collect()),
    )
    raw_s, raw_filter_s, collect_s, pandas_s, filter_s = (wall for wall, _, _ in timings)
    print(
        f"collect() {N} scalar rows, iterated as dicts: {collect_s * 1000:.0f} ms, "
        f"{collect_s / raw_s:.2f}x raw fetchall + dicts ({raw_s * 1000:.0f} ms)"
    )
    print(f"to_pandas() {N} scalar rows: {pandas_s * 1000:.0f} ms, {pandas_s / raw_s:.2f}x raw fetchall + dicts")
    print(
        f"pushed-down filter n % 10 == 0: {filter_s * 1000:.1f} ms, "
        f"{filter_s / raw_filter_s:.2f}x raw SQL + dicts ({raw_filter_s * 1000:.1f} ms)"
    )


RSS_SCRIPT = """
import sys, mediatable as mt

def peak_rss():
    with open('/proc/self/status') as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith('VmHWM:'))

mt.init(home=sys.argv[1], quiet=True)
t = mt.get_table('pics')
t.head(1)  # warm up: imports, connections
with open('/proc/self/clear_refs', 'w') as clear:
    clear.write('5')  # the peak starts again from here
before = peak_rss()
if sys.argv[2] == 'collect':
    count = len(t.select(t.image, t.n).collect())
else:  # streaming: bounded by the batch (and the one fetched ahead), whatever the row count
    count = sum(len(batch) for batch in t.select(t.image, t.n).iter_batches(batch_size=1000))
print(count, peak_rss() - before)
"""


def bench_memory(folder: Path) -> None:
    image = folder / "photo.jpg"
    PIL.Image.effect_noise((256, 256), 64).convert("RGB").save(image, quality=95)
    size = image.stat().st_size
    t = mt.create_table("pics", {"image": mt.Image, "n": mt.Int})
    t.insert([{"image": str(image), "n": i} for i in range(N)], quiet=True)
    growth = {}
    for mode in ("collect", "iter_batches"):
        out = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(folder / "home"), mode], capture_output=True, text=True, check=True
        )
        count, growth[mode] = (int(v) for v in out.stdout.split())
    print(
        f"collect() of {count} image rows: peak RSS +{growth['collect'] / 2**20:.0f} MiB "
        f"({growth['collect'] / count:.0f} bytes/row); holding the bytes would take "
        f"{count * size / 2**20:.0f} MiB ({size} bytes/file)"
    )
    print(
        f"iter_batches(batch_size=1000) over the same {count} rows: peak RSS "
        f"+{growth['iter_batches'] / 2**20:.1f} MiB, {growth['iter_batches'] / growth['collect']:.2f}x collect()'s"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mt-bench-queries-") as tmp:
        folder = Path(tmp)
        mt.init(home=folder / "home", quiet=True)
        bench_insert(folder)
        bench_reads(folder)
        bench_memory(folder)
        os.sync()


if __name__ == "__main__":
    main()
