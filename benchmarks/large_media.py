"""Ranged reads of a 1 GiB video against whole-file downloads, over a slow link, in the same run.

Setup: two generated MP4s of ~1 GiB (1280x720 noise, a keyframe every second, 10 fps, ~3 minutes;
one with its index first — faststart —, one with its index at the end, PyAV's default), served by
the test HTTP server (tests/servers/http.py, in its own process) with 20 ms of latency per request
and all responses together capped at BANDWIDTH bytes per second.

For each file, each in a fresh home (an empty cache) and through a table, as users run it:

- `t.video.duration`, then `t.video.extract_frame(mid)` in another fresh home: ranged reads
  (defaults: 4 MiB blocks, objects of 32 MiB and more read by ranges);
- the same two calls again in the same home: the warm repeat;
- the baseline: `duration` with ranged reads off (`min_ranged_size` larger than the file), i.e.
  one whole-file download, as every version before ranged reads did.

Printed: bytes the server sent (its own count) and seconds, and the share of the file; the
results of ranged and whole reads are checked equal. Targets: `duration` transfers at most 2% of
the file, `extract_frame(mid)` at most 5%, a warm repeat 0 bytes.
Run: `.venv/bin/python benchmarks/large_media.py` (needs ~3 GiB free in the temp folder).
"""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mediatable as mt
from mediagen import make_noise_mp4
from servers.http import FaultServer

LATENCY = 0.020
BANDWIDTH = 125e6  # bytes per second: a 1 Gbit/s link
TARGET = 1024**3
SIZE = (1280, 720)
FPS = 10


def serve(root: str, commands: Any, answers: Any) -> None:
    """The test server in its own process; answers 'sent' (bytes so far) and 'reset' over queues."""
    with FaultServer(root) as server:

        def configure() -> None:
            server.set_fault(None, latency=LATENCY)
            server.set_bandwidth(BANDWIDTH)

        configure()
        answers.put(server.base_url)
        while (command := commands.get()) != "stop":
            if command == "reset":
                server.reset()
                configure()
                answers.put(None)
            elif command == "sent":
                answers.put((server.sent(), server.count(method=None)))


def generate(folder: Path) -> dict[str, Path]:
    probe = make_noise_mp4(folder / "probe.mp4", seconds=2, fps=FPS, size=SIZE)
    per_second = probe.stat().st_size / 2
    seconds = round(TARGET / per_second)
    files = {}
    for name, faststart in (("faststart", True), ("index-at-end", False)):
        started = time.perf_counter()
        files[name] = make_noise_mp4(
            folder / f"{name}.mp4", seconds=seconds, fps=FPS, size=SIZE, faststart=faststart, unique_gops=3
        )
        size = files[name].stat().st_size
        print(f"generated {name}.mp4: {size / 1024**3:.2f} GiB, {seconds} s, in {time.perf_counter() - started:.1f} s")
    probe.unlink()
    return files


class Server:
    def __init__(self, root: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.commands, self.answers = context.Queue(), context.Queue()
        self.process = context.Process(target=serve, args=(str(root), self.commands, self.answers), daemon=True)
        self.process.start()
        self.base = self.answers.get(timeout=60)

    def reset(self) -> None:
        self.commands.put("reset")
        self.answers.get(timeout=60)

    def sent(self) -> tuple[int, int]:
        self.commands.put("sent")
        sent, requests = self.answers.get(timeout=60)
        return sent, requests

    def stop(self) -> None:
        self.commands.put("stop")
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()


def measure(server: Server, run: Callable[[], Any]) -> tuple[Any, int, int, float]:
    """(result, bytes sent, requests, seconds) of one call."""
    server.reset()
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    sent, requests = server.sent()
    return result, sent, requests, seconds


def table(home: Path, url: str, **settings: Any) -> Any:
    mt.init(home=home, quiet=True, progress=False, **settings)
    t = mt.create_table("videos", {"video": mt.Video}, if_exists="ignore")
    if not t.count():
        t.insert([{"video": url}], quiet=True)
    return t


def frame_at(t: Any, seconds: float) -> Any:
    return t.select(f=t.video.extract_frame(seconds)).collect()["f"][0]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mt-bench-large-"))
    server = None
    try:
        files = generate(work)
        server = Server(work)
        rows: list[tuple[str, str, int, int, float, int]] = []
        for name, path in files.items():
            size = path.stat().st_size
            url = f"{server.base}/{path.name}"
            homes = work / f"homes-{name}"

            t = table(homes / "ranged", url)
            duration, *numbers = measure(server, lambda t=t: t.select(d=t.video.duration).collect()["d"][0])
            rows.append((name, "duration (ranged, cold)", *numbers, size))
            warm, *numbers = measure(server, lambda t=t: t.select(d=t.video.duration).collect()["d"][0])
            rows.append((name, "duration (ranged, warm repeat)", *numbers, size))
            assert warm == duration

            mid = duration / 2
            t = table(homes / "frame", url)
            frame, *numbers = measure(server, lambda t=t, mid=mid: frame_at(t, mid))
            rows.append((name, f"extract_frame({mid:.1f}) (ranged, cold)", *numbers, size))
            _, *numbers = measure(server, lambda t=t, mid=mid: frame_at(t, mid))
            rows.append((name, f"extract_frame({mid:.1f}) (ranged, warm repeat)", *numbers, size))

            t = table(homes / "whole", url, min_ranged_size=4 * size)
            whole, *numbers = measure(server, lambda t=t: t.select(d=t.video.duration).collect()["d"][0])
            rows.append((name, "duration (whole-file download)", *numbers, size))
            assert whole == duration
            local_frame = mt.functions.video.extract_frame(str(path), mid)
            assert np.array_equal(np.asarray(frame), np.asarray(local_frame)), "ranged frame differs"
            while mt.api._current:
                mt.api._current.pop().close()
            shutil.rmtree(homes, ignore_errors=True)

        print(
            f"\n~1 GiB MP4s over HTTP: {LATENCY * 1000:.0f} ms latency, {BANDWIDTH / 1e6:.0f} MB/s cap; "
            "bytes are the server's count"
        )
        print(f"{'file':13} {'call':40} {'bytes sent':>14} {'of file':>8} {'GETs':>5} {'seconds':>8} {'vs whole':>9}")
        for name in files:
            baseline = next(r for r in rows if r[0] == name and "whole" in r[1])
            for file, call, sent, requests, seconds, size in (r for r in rows if r[0] == name):
                ratio = f"{baseline[4] / seconds:8.1f}x" if "whole" not in call and seconds else ""
                print(f"{file:13} {call:40} {sent:14,} {sent / size:8.2%} {requests:5} {seconds:8.2f} {ratio:>9}")
        checks = []
        for file, call, sent, _, _, size in rows:
            if "warm" in call:
                checks.append((f"{file} {call}: 0 bytes", sent == 0))
            elif call.startswith("duration (ranged"):
                checks.append((f"{file} {call}: <= 2%", sent <= 0.02 * size))
            elif call.startswith("extract_frame"):
                checks.append((f"{file} {call}: <= 5%", sent <= 0.05 * size))
        print()
        for text, ok in checks:
            print(f"{'ok  ' if ok else 'FAIL'} {text}")
        if not all(ok for _, ok in checks):
            sys.exit(1)
    finally:
        while mt.api._current:
            mt.api._current.pop().close()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
