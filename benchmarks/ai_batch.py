"""AI in batch: OCR over remote images through the pipeline vs a plain loop; similarity top-10 latency.

1. OCR: N images of rendered text (default 200) behind the test HTTP server (20 ms latency per
   request). Measured in the same run, with the model already loaded in both:
   - pipeline: `t.add_computed_column(ocr=mt.functions.ocr(t.image))`, cold cache (fetch, decode,
     EXIF, batches of 8, results written to the catalog);
   - baseline: the same model (`text_ocr.read_text`) in a plain loop over the same files on local disk.
   Target: pipeline / baseline <= 1.15.
2. Similarity search at 100,000 rows (384-d vectors from a cheap deterministic embedding, so that
   building the table takes seconds): `order_by(t.text.similarity(q), asc=False).limit(10)`, median
   of 20 queries after a warm-up, on SQLite and on PostgreSQL 15 (the test server's binaries).

Run: `.venv/bin/python benchmarks/ai_batch.py` (env `AI_BENCH_N`, `AI_BENCH_ROWS` shrink it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mediatable as mt
from mediatable.functions.ai import text_ocr
from servers.http import FaultServer
from servers.postgres import PostgresServer

N = int(os.environ.get("AI_BENCH_N", "200"))
ROWS = int(os.environ.get("AI_BENCH_ROWS", "100000"))
WORDS = ["RED", "CAR", "OPEN", "CAFE", "EXIT", "BUS", "STOP", "SALE", "HOTEL", "NORTH", "PARK", "GATE"]


def text_jpeg(i: int) -> bytes:
    text = f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7 + 3) % len(WORDS)]} {i}"
    img = PIL.Image.new("RGB", (720, 200), (250, 245, 235))
    PIL.ImageDraw.Draw(img).text((40, 60), text, fill=(20, 20, 20), font=PIL.ImageFont.load_default(size=64))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def ocr_overhead(work: Path) -> None:
    local = work / "local"
    local.mkdir()
    server = FaultServer().start()
    try:
        server.set_fault(latency=0.02)
        urls = []
        for i in range(N):
            data = text_jpeg(i)
            (local / f"{i}.jpg").write_bytes(data)
            urls.append(server.put(f"ocr/{i}.jpg", data))
        text_ocr.read_text(local / "0.jpg")  # load the model before either measurement

        start = time.perf_counter()
        baseline = [text_ocr.read_text(local / f"{i}.jpg")["text"] for i in range(N)]
        bare = time.perf_counter() - start

        mt.init(home=work / "home", quiet=True, progress=False)
        with contextlib.redirect_stdout(io.StringIO()):
            t = mt.create_table("scans", {"image": mt.Image, "n": mt.Int})
            t.insert([{"image": u, "n": i} for i, u in enumerate(urls)], quiet=True)
        start = time.perf_counter()
        t.add_computed_column(ocr=mt.functions.ocr(t.image), quiet=True)
        piped = time.perf_counter() - start
        texts = t.order_by(t.n).select(text=t.ocr["text"]).collect()["text"]
    finally:
        server.stop()
    assert texts == baseline, "the pipeline read other text than the plain loop"
    print(f"OCR over {N} remote images: pipeline {piped:.1f} s ({N / piped:.2f} images/s), ")
    print(f"  plain loop over local files {bare:.1f} s ({N / bare:.2f} images/s): overhead {piped / bare:.3f}x")


@mt.udf(batch_size=1000)
def hashed_vector(text: list[str]) -> list[mt.Array(mt.Float, (384,))]:
    """A cheap, deterministic 384-d vector per text (stands in for a model: the search is what is measured)."""
    out = []
    for s in text:
        seed = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")
        out.append(np.random.default_rng(seed).standard_normal(384))
    return out


def search_latency(name: str, home: Path, db_url: str | None) -> None:
    mt.init(home=home, db_url=db_url, quiet=True, progress=False)
    with contextlib.redirect_stdout(io.StringIO()):
        t = mt.create_table("docs", {"text": mt.String})
        start = time.perf_counter()
        t.insert([{"text": f"document {i}"} for i in range(ROWS)], quiet=True)
        t.add_embedding_index("text", embedding=hashed_vector, quiet=True)
    built = time.perf_counter() - start
    queries = [f"document {i * 4999 % ROWS}" for i in range(21)]
    timings = []
    for query in queries:
        start = time.perf_counter()
        rows = t.order_by(t.text.similarity(query), asc=False).limit(10).select(t.text).collect()
        timings.append(time.perf_counter() - start)
        assert rows["text"][0] == query  # its own vector is the best match
    first, rest = timings[0], timings[1:]
    print(
        f"similarity top-10 over {ROWS} rows on {name}: median {statistics.median(rest) * 1000:.1f} ms "
        f"(first query, loading the vectors: {first * 1000:.0f} ms; insert + index: {built:.0f} s)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mt-ai-bench-") as tmp:
        work = Path(tmp)
        ocr_overhead(work)
        search_latency("SQLite", work / "sqlite-home", None)
        postgres = PostgresServer()
        postgres.start()
        try:
            search_latency("PostgreSQL 15", work / "pg-home", postgres.new_database())
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
