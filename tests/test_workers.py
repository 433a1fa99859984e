"""Function calls on threads and in worker processes: same values, errors, order and progress (exec/workers.py,
exec/isolation.py).

Every scenario runs in both modes; the worker processes are real (forkserver), the media is served
by the real HTTP test server.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import PIL.Image
import pytest

import mediagen
import mediatable as mt
from mediatable.config import load_settings
from mediatable.exec import isolation
from mediatable.exec.pipeline import Pipeline, Target
from mediatable.exec.workers import CallRouter, WorkerProcesses, gil_bound, worker_processes
from mediatable.io.media_store import ImageEncoding
from servers.http import FaultServer

MODES = ["thread", "process"]


def udfs(mode: str) -> SimpleNamespace:
    """The same functions, placed on threads or in processes (defined here: pickled by value)."""

    @mt.udf(isolation=mode)
    def inverse(n: int) -> float:
        return 1 / n

    @mt.udf(isolation=mode)
    def pid(n: int) -> int:
        return os.getpid()

    @mt.udf(isolation=mode)
    def small_gray(img: mt.Image) -> mt.Image:
        return img.convert("L").resize((8, 6))

    @mt.udf(isolation=mode)
    def width_plus(img: mt.Image, extra: int) -> int:
        return img.width + extra

    @mt.udf(isolation=mode, batch_size=3)
    def batch_len(values: list[int]) -> list[int]:
        return [len(values)] * len(values)

    @mt.udf(isolation=mode)
    def image_from_url(img: mt.Image) -> int:  # the argument is a String column holding URLs
        return img.height

    return SimpleNamespace(**{f.__name__: f for f in (inverse, pid, small_gray, width_plus, batch_len, image_from_url)})


@pytest.fixture
def session(clean_env: Path) -> mt.Session:
    return mt.init(home=clean_env, quiet=True, compute_workers=2)


def image_rows(server: FaultServer, tmp_path: Path) -> list[dict[str, Any]]:
    folder = f"w-{uuid.uuid4().hex[:8]}"
    good = server.put(f"{folder}/good.jpg", mediagen.make_jpeg(tmp_path / "g.jpg", size=(40, 30)).read_bytes())
    corrupt = server.put(f"{folder}/bad.jpg", mediagen.make_corrupt_jpeg(tmp_path / "c.jpg").read_bytes())
    missing = server.url(f"{folder}/missing.jpg?token=SECRET123")
    rows = [
        {"image": good, "n": 2, "url": good},
        {"image": corrupt, "n": 0, "url": good},
        {"image": missing, "n": 4, "url": missing},
    ]
    return rows * 7  # several chunks, in a known order


def scenario(mode: str, rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    f = udfs(mode)
    t = mt.create_table(name, {"image": mt.Image, "n": mt.Int, "url": mt.String})
    t.insert(rows, quiet=True)
    t.add_computed_column(inv=f.inverse(t.n), quiet=True)
    t.add_computed_column(wide=t.inv * 2, quiet=True)  # reads a failed cell: "upstream" errors
    t.add_computed_column(plus=f.width_plus(t.image, t.n), quiet=True)
    t.add_computed_column(gray=f.small_gray(t.image), image_format="png", quiet=True)
    t.add_computed_column(gray_w=t.gray.width, quiet=True)
    t.add_computed_column(batch=f.batch_len(t.n), quiet=True)
    t.add_computed_column(from_url=f.image_from_url(t.url), quiet=True)
    t.add_computed_column(pid=f.pid(t.n), quiet=True)
    result = t.order_by(t.n).select(
        t.n,
        t.inv,
        t.inv.errortype,
        t.wide.errormsg,
        t.plus,
        t.plus.errortype,
        t.plus.errormsg,
        t.gray_w,
        t.gray.errormsg,
        t.batch,
        t.from_url,
        t.from_url.errormsg,
        t.pid,
        gray_path=t.gray.localpath,
    )
    return list(result.collect())


def test_values_errors_and_order_are_the_same_in_processes(
    session: mt.Session, http_server: FaultServer, tmp_path: Path
) -> None:
    rows = image_rows(http_server, tmp_path)
    on_threads = scenario("thread", rows, "threads")
    in_processes = scenario("process", rows, "processes")
    assert {r["pid"] for r in on_threads} == {os.getpid()}
    assert os.getpid() not in {r["pid"] for r in in_processes}
    assert len({r["pid"] for r in in_processes}) <= 2  # compute_workers
    for row in in_processes:
        if row["gray_path"] is not None:
            with PIL.Image.open(row["gray_path"]) as img:
                assert (img.format, img.mode, img.size) == ("PNG", "L", (8, 6))  # the column's own encoding

    def comparable(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in ("pid", "gray_path")} for r in result]

    assert comparable(in_processes) == comparable(on_threads)
    by_n = {r["n"]: r for r in on_threads}
    assert by_n[0]["inv_errortype"] == "ZeroDivisionError" and by_n[0]["wide_errormsg"].startswith("upstream")
    assert by_n[0]["plus_errortype"] == "MediaDecodeError" and "bad.jpg" in by_n[0]["plus_errormsg"]
    assert by_n[4]["plus_errortype"] == "MediaNotFound" and "SECRET123" not in by_n[4]["plus_errormsg"]
    assert by_n[4]["from_url_errormsg"] and "missing.jpg" in by_n[4]["from_url_errormsg"]
    assert by_n[2]["plus"] == 42 and by_n[2]["gray_w"] == 8 and by_n[2]["from_url"] == 30


@pytest.mark.parametrize("mode", MODES)
def test_on_error_abort_names_the_row_and_changes_nothing(session: mt.Session, mode: str) -> None:
    f = udfs(mode)
    t = mt.create_table("nums", {"n": mt.Int})
    t.insert([{"n": i} for i in range(1, 40)] + [{"n": 0}], quiet=True)
    with pytest.raises(mt.ComputeError, match=r"nums\.inv failed at row 40: ZeroDivisionError") as info:
        t.add_computed_column(inv=f.inverse(t.n), on_error="abort")
    assert (info.value.column, info.value.row) == ("inv", 40)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert t.columns == ["n"]


@pytest.mark.parametrize("mode", MODES)
def test_progress_and_order_through_the_pipeline(session: mt.Session, mode: str) -> None:
    f = udfs(mode)
    expr = f.inverse(mediagen.column("n", mt.Int))
    rows = [{"n": n} for n in range(1, 101)]
    seen: list[int] = []
    with session.cache_lease() as lease:
        pipeline = Pipeline(lease, session.media_store, 2, seen.append, processes=worker_processes(session))
        pipeline.run(rows, [Target(name="inv", expr=expr, col_type=mt.Float)])
    assert sum(seen) == 100 and len(seen) > 1
    assert [r["inv"] for r in rows] == [1 / n for n in range(1, 101)]


@pytest.mark.parametrize("mode", MODES)
def test_queries_raise_or_ignore_the_same_way(session: mt.Session, mode: str, capsys: pytest.CaptureFixture) -> None:
    f = udfs(mode)
    t = mt.create_table("q", {"n": mt.Int})
    t.insert([{"n": n} for n in (3, 0, 1, 2)], quiet=True)
    assert t.where((t.n > 0) & (f.inverse(t.n) > 0.4)).order_by(t.n).select(t.n).collect()["n"] == [1, 2]
    with pytest.raises(mt.ComputeError, match="ZeroDivisionError") as info:
        t.select(x=f.inverse(t.n)).collect()
    assert info.value.row == 2
    capsys.readouterr()
    values = t.order_by(t.n).select(x=f.inverse(t.n)).collect(on_error="ignore")["x"]
    assert values == [None, 1.0, 0.5, 1 / 3]
    assert "1 of 4 values of 'x' failed" in capsys.readouterr().out


# -- worker processes ---------------------------------------------------------------------------------------


@functools.cache
def _load_model(folder: str) -> dict[str, int]:
    """Stands in for an expensive model: each load leaves a file named after the loading process."""
    Path(folder, f"{os.getpid()}-{uuid.uuid4().hex}").touch()
    return {"bias": 1}


@mt.udf(isolation="process")
def predict(n: int, folder: str) -> int:
    return n + _load_model(folder)["bias"]


def test_a_model_loads_once_per_worker_process(session: mt.Session, tmp_path: Path) -> None:
    loads = tmp_path / "loads"
    loads.mkdir()
    t = mt.create_table("m", {"n": mt.Int})
    t.insert([{"n": n} for n in range(200)], quiet=True)
    t.add_computed_column(p=predict(t.n, str(loads)), quiet=True)
    t.insert([{"n": n} for n in range(200, 260)], quiet=True)  # new rows: the same workers compute them
    t.recompute_columns("p", quiet=True)
    assert sorted(t.select(t.p).collect()["p"]) == list(range(1, 261))
    pids = {name.split("-")[0] for name in os.listdir(loads)}
    assert 1 <= len(os.listdir(loads)) == len(pids) <= 2  # once per worker, never per chunk or per run
    assert str(os.getpid()) not in pids


def test_the_pool_starts_on_first_use_and_closes_with_the_session(session: mt.Session) -> None:
    processes = worker_processes(session)
    assert worker_processes(session) is processes and not processes.started
    f = udfs("thread")
    t = mt.create_table("lazy", {"n": mt.Int})
    t.insert([{"n": 1}], quiet=True)
    t.add_computed_column(p=f.pid(t.n), quiet=True)
    assert not processes.started  # threads only: no process was started
    t.add_computed_column(q=udfs("process").pid(t.n), quiet=True)
    assert processes.started
    (worker_pid,) = t.select(t.q).collect()["q"]
    os.kill(worker_pid, 0)  # alive between operations
    session.close()
    assert not processes.started
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)


def test_generated_media_is_encoded_and_written_by_the_worker(session: mt.Session, tmp_path: Path) -> None:
    f = udfs("process")
    call = f.small_gray(mediagen.column("image", mt.Image))
    source = str(mediagen.make_jpeg(tmp_path / "a.jpg", size=(30, 20)))
    key, blob = isolation.dumps_call(call)
    save = isolation.SaveSpec(7, "thumb", mt.Image, ImageEncoding("webp", 70))
    task = isolation.CallTask(key, blob, [{"image": source}, {"image": None}], {source: source}, save)
    stored, empty = worker_processes(session).run(task)
    assert isinstance(stored, isolation.Stored) and empty is None
    path = Path(stored.url.removeprefix("file://"))
    assert path.parent == session.settings.media_dir / "7" / "thumb"
    with PIL.Image.open(path) as img:
        assert (img.format, img.size) == ("WEBP", (8, 6))


def test_a_call_that_cannot_be_pickled_is_refused_clearly(session: mt.Session) -> None:
    lock = threading.Lock()

    @mt.udf(isolation="process")
    def locked(n: int) -> int:
        with lock:
            return n

    t = mt.create_table("p", {"n": mt.Int})
    t.insert([{"n": 1}], quiet=True)
    with pytest.raises(mt.ExprError, match=r"cannot be sent to a worker process .*isolation='thread'"):
        t.select(x=locked(t.n)).collect()


@mt.udf(isolation="process")
def crash_on_13(n: int) -> int:
    if n == 13:
        os._exit(3)  # a crash in native code, as far as the pool can tell
    return n


def test_a_dead_worker_costs_its_cells_only(session: mt.Session) -> None:
    t = mt.create_table("c", {"n": mt.Int})
    t.insert([{"n": n} for n in range(40)], quiet=True)
    status = t.add_computed_column(x=crash_on_13(t.n), quiet=True)
    rows = {r["n"]: r for r in t.select(t.n, t.x, t.x.errortype, t.x.errormsg).collect()}
    failed = [n for n, r in rows.items() if r["x_errortype"] is not None]
    assert failed == [13] and status.num_excs == 1  # its chunk's other rows ran again, one by one
    assert {rows[n]["x_errortype"] for n in failed} == {"WorkerCrashed"}
    assert "worker process" in rows[13]["x_errormsg"]
    assert all(rows[n]["x"] == n for n in rows if n not in failed)
    t.add_computed_column(y=udfs("process").pid(t.n), quiet=True)  # a fresh pool serves the next operation
    assert t.where(t.y == None).count() == 0  # noqa: E711


def test_a_call_lost_by_a_breaking_pool_fails_instead_of_waiting_forever(tmp_path: Path) -> None:
    # CPython 3.11's pool can lose a call submitted while it breaks: its future never settles (seen
    # as a hang of test_a_dead_worker_costs_its_cells_only). Such a call ends as broken, soon.
    processes = WorkerProcesses(load_settings(tmp_path, environ={}, compute_workers=1))
    processes.lost_call_seconds = 0.5
    try:
        executor = processes._pool()
        processes._discard(executor)  # what a thread does on seeing the pool broken
        lost: Future[list[Any]] = Future()  # the lost call's: nothing will ever settle it
        started = time.monotonic()
        with pytest.raises(BrokenProcessPool, match="broke while this call was handed to it"):
            processes._values(executor, lost)
        assert time.monotonic() - started < 10
        fresh = processes._pool()  # the next call gets a new pool, and its result
        assert processes._values(fresh, fresh.submit(isolation.ready, 0)) != os.getpid()
    finally:
        processes.close()


# -- the automatic choice ------------------------------------------------------------------------------------


def test_gil_bound_is_one_busy_core_shared_by_waiting_threads() -> None:
    # two threads, one second: pure Python takes turns (1 core in all, each call on CPU half the time)
    assert gil_bound(cpu=0.95, span=1.0, elapsed=2.0)
    # numpy / Pillow: both threads on CPU at once
    assert not gil_bound(cpu=1.9, span=1.0, elapsed=2.0)
    # waiting on I/O or a lock: little CPU
    assert not gil_bound(cpu=0.1, span=1.0, elapsed=2.0)


def python_loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i % 7
    return total


def test_auto_moves_a_measured_gil_bound_function_and_remembers(session: mt.Session) -> None:
    @mt.udf
    def spin(n: int) -> int:
        return python_loop(2000) * 0 + os.getpid()

    assert spin.isolation == "auto"
    processes = worker_processes(session)
    t = mt.create_table("auto", {"n": mt.Int})
    t.insert([{"n": n} for n in range(64)], quiet=True)
    t.add_computed_column(a=spin(t.n), quiet=True)  # too little work to measure: stays on threads
    assert set(t.select(t.a).collect()["a"]) == {os.getpid()}
    processes.costs[spin.name] = 0.05  # as if measured: 50 ms of GIL-bound CPU per row
    t.add_computed_column(b=spin(t.n), quiet=True)
    assert os.getpid() not in set(t.select(t.b).collect()["b"])
    processes.costs[spin.name] = 0.0  # measured: not GIL-bound
    t.add_computed_column(c=spin(t.n), quiet=True)
    assert set(t.select(t.c).collect()["c"]) == {os.getpid()}


def test_auto_never_moves_what_is_unsafe_to_move(session: mt.Session) -> None:
    state: list[int] = []

    @mt.udf
    def remembers(n: int) -> int:
        state.append(n)  # reads its caller's variable: a copy in another process would not share it
        return os.getpid()

    @mt.udf(isolation="thread")
    def pinned(n: int) -> int:
        return os.getpid()

    @mt.udf(light=True)
    def cheap(n: int) -> int:
        return os.getpid()

    processes = worker_processes(session)
    t = mt.create_table("unsafe", {"n": mt.Int})
    t.insert([{"n": n} for n in range(30)], quiet=True)
    for function in (remembers, pinned, cheap):
        processes.costs[function.name] = 0.05
        t.add_computed_column(**{function.__name__: function(t.n)}, quiet=True)
        assert set(t.select(t[function.__name__]).collect()[function.__name__]) == {os.getpid()}
    assert not processes.started


def test_a_script_without_a_main_guard_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import mediatable as mt
            mt.init(home={str(tmp_path / "home")!r}, quiet=True, compute_workers=2)

            @mt.udf(isolation="process")
            def double(n: int) -> int:
                return 2 * n

            t = mt.create_table("t", {{"n": mt.Int}})
            t.insert([{{"n": 1}}], quiet=True)
            try:
                t.add_computed_column(d=double(t.n), quiet=True)
            except mt.ExprError as exc:
                print("refused:", exc)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "if __name__ == '__main__':" in done.stdout


def test_routers_without_processes_keep_everything_on_threads() -> None:
    router = CallRouter(None, threads=2, rows=10)
    f = udfs("thread")
    call = f.pid(mediagen.column("n", mt.Int))
    with mediagen.LocalEnv({"n": 1}) as env:
        assert router.run_call(call, [env], call.eval_here) == [os.getpid()]
    process_call = udfs("process").pid(mediagen.column("n", mt.Int))
    with pytest.raises(mt.ExprError, match="worker processes"), mediagen.LocalEnv({"n": 1}) as env:
        router.run_call(process_call, [env], process_call.eval_here)


@pytest.mark.parametrize("mode", MODES)
def test_generated_media_reaches_a_destination_from_either_mode(session: mt.Session, mode: str, tmp_path: Path) -> None:
    f = udfs(mode)
    source = str(mediagen.make_jpeg(tmp_path / "a.jpg", size=(30, 20)))
    destination = tmp_path / "bucket"
    t = mt.create_table("dest", {"image": mt.Image})
    t.insert([{"image": source}, {"image": str(tmp_path / "missing.jpg")}], quiet=True)
    status = t.add_computed_column(
        gray=f.small_gray(t.image), destination=str(destination), image_format="webp", quiet=True
    )
    assert status.num_excs == 1
    url, missing = t.select(t.gray.fileurl).collect()["gray_fileurl"]
    assert missing is None and url.startswith(f"file://{destination}/") and url.endswith(".webp")
    assert [p.suffix for p in destination.iterdir()] == [".webp"]
