"""The Ray executor against a real Ray head on 127.0.0.1 (one per test session), with the real
PostgreSQL server and the loopback media servers: fills, recomputes and inserts on Ray workers,
per-cell errors, media through the workers' caches, destinations, and the faults (a worker killed
mid-run, a driver killed and the work run again, several processes on one PostgreSQL catalog),
Ray Client mode (`executor='ray://...'`), and what a cluster of two nodes refuses.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import mediagen
import mediatable as mt
from mediatable.exec.executors.staging import staged_jobs
from servers.cloud import S3Server
from servers.http import FaultServer
from servers.ray_cluster import RayHead


@mt.udf
def triple_or_fail(n: int) -> int:
    if n % 7 == 3:
        raise ValueError(f"no triple for {n}")
    return 3 * n


@mt.udf
def logged_square(n: int, log: str, delay: float) -> int:
    """n*n after `delay` seconds (an error for n ending in 7); appends `<pid> <n>` to the file `log`."""
    time.sleep(delay)
    with open(log, "a") as file:
        file.write(f"{os.getpid()} {n}\n")
    if n % 10 == 7:
        raise ValueError(f"no square for {n}")
    return n * n


def expected_square(n: int) -> int | None:
    return None if n % 10 == 7 else n * n


@pytest.fixture
def home(clean_env: Path, db_url: str) -> Path:
    mt.init(home=clean_env, db_url=db_url, quiet=True)
    return clean_env


def numbers(count: int, name: str = "nums") -> mt.Table:
    t = mt.create_table(name, {"n": mt.Int}, if_exists="replace")
    t.insert([{"n": i} for i in range(count)], quiet=True)
    return t


def log_lines(log: Path) -> list[tuple[int, int]]:
    """(pid, n) per line the UDF wrote."""
    return [(int(pid), int(n)) for pid, n in (line.split() for line in log.read_text().splitlines())]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def child(
    session: mt.Session, body: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """A real Python process (`mt` initialized on the same catalog and home) running `body`; killed at the end."""
    script = "import sys, time, pathlib\nimport mediatable as mt\n"
    script += f"mt.init(home={str(session.settings.home)!r}, db_url={session.settings.catalog_url!r}, quiet=True)\n"
    script += textwrap.dedent(body)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def test_fill_recompute_and_insert_on_ray_match_local(home: Path, ray_address: str) -> None:
    t = numbers(60)
    status = t.add_computed_column(tri=triple_or_fail(t.n), executor=ray_address)
    failing = [i for i in range(60) if i % 7 == 3]
    assert (status.num_rows, status.num_computed_values, status.num_excs) == (60, 60, len(failing))
    rows = t.select(t.n, t.tri, t.tri.errormsg).order_by(t.n).collect()
    assert [r["tri"] for r in rows] == [None if i in failing else 3 * i for i in range(60)]
    assert rows[3]["tri_errormsg"] == "no triple for 3"  # per-cell errors keep their message

    t.add_computed_column(plus=t.tri + 1, quiet=True)  # local, reading the column Ray filled
    status = t.recompute_columns("tri", executor=ray_address, quiet=True)
    assert status.num_computed_values == 120  # tri and its dependent plus
    status = t.insert([{"n": 100}, {"n": 102}], executor=ray_address, quiet=True)
    assert status.num_excs == 0
    assert t.where(t.n >= 100).select(t.tri, t.plus).order_by(t.n).collect().to_pandas().values.tolist() == [
        [300, 301],
        [306, 307],
    ]
    assert list(t.history()["change"])[:4] == ["insert", "recompute", "add_column", "add_column"]  # one each


@mt.udf
def tagged_word(n: int, tag_file: str) -> str:
    """A word spelled from n, after the tag the file holds (changing the file changes every value)."""
    return Path(tag_file).read_text() + "".join(chr(97 + int(digit)) for digit in str(n))


@mt.udf
def hashed_vector(text: str) -> mt.Array(mt.Float, (16,)):
    """A deterministic 16-d vector per text: different texts, unrelated vectors."""
    return list(np.random.default_rng(list(text.encode())).standard_normal(16))


def test_an_embedding_index_on_a_column_ray_fills_stays_current(home: Path, ray_address: str, tmp_path: Path) -> None:
    tag = tmp_path / "tag"
    tag.write_text("")
    t = numbers(30)
    t.add_computed_column(word=tagged_word(t.n, str(tag)), executor=ray_address, quiet=True)
    t.add_embedding_index("word", embedding=hashed_vector, quiet=True)

    def best(query: str) -> tuple[int, float]:
        found = t.order_by(t.word.similarity(query), asc=False).limit(1)
        rows = found.select(t.n, s=t.word.similarity(query)).collect()
        return rows["n"][0], round(rows["s"][0], 6)

    def word(n: int) -> str:
        return str(tagged_word.fn(n, str(tag)))

    assert best(word(12)) == (12, 1.0)
    t.insert([{"n": 500}, {"n": 501}], executor=ray_address, quiet=True)  # values computed by Ray workers
    assert best(word(501)) == (501, 1.0)
    old = [word(n) for n in (7, 500)]
    tag.write_text("new ")
    t.recompute_columns("word", executor=ray_address, quiet=True)  # every value changes, on Ray
    assert best(word(7)) == (7, 1.0) and best(word(500)) == (500, 1.0)
    assert all(best(w)[1] < 0.99 for w in old)  # no vector of the old values is left


def test_the_progress_bar_moves_within_ranges(
    clean_env: Path, ray_address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mt.init(home=clean_env, quiet=True, progress=True)
    t = numbers(160)  # 2 workers: 8 ranges of 20 rows, each computed in chunks of 8 rows
    capsys.readouterr()
    t.add_computed_column(sq=logged_square(t.n, str(tmp_path / "log"), 0.05), executor=ray_address, quiet=True)
    shown = {int(n) for n in re.findall(r"(\d+)/160", capsys.readouterr().err)}
    assert 160 in shown
    assert any(n % 20 for n in shown), shown  # rows counted as workers compute them, not only per range


def test_worker_killed_mid_range_costs_a_retry_not_a_value(home: Path, ray_address: str, tmp_path: Path) -> None:
    t = numbers(40)
    versions = len(t.history())
    log = tmp_path / "log"
    log.touch()
    killed: list[int] = []
    stop = threading.Event()

    def kill_first_worker() -> None:  # as soon as a worker has computed one row of its range
        while not stop.is_set() and not killed:
            lines = log_lines(log)
            if lines:
                os.kill(lines[0][0], signal.SIGKILL)
                killed.append(lines[0][0])
            time.sleep(0.01)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    try:
        status = t.add_computed_column(sq=logged_square(t.n, str(log), 0.1), executor=ray_address, quiet=True)
    finally:
        stop.set()
        killer.join(timeout=30)
    assert killed and not alive(killed[0])
    lines = log_lines(log)
    retried = {n for pid, n in lines if pid == killed[0]}
    again = {n for pid, n in lines if pid != killed[0] and n in retried}
    assert retried and again == retried  # the killed worker's range ran again elsewhere
    assert (status.num_rows, status.num_computed_values, status.num_excs) == (40, 40, 4)
    rows = t.select(t.n, t.sq, t.sq.errormsg).order_by(t.n).collect()
    assert len(rows) == 40 and [r["sq"] for r in rows] == [expected_square(n) for n in range(40)]
    assert rows[7]["sq_errormsg"] == "no square for 7"
    assert len(t.history()) == versions + 1  # one change, as with the local executor
    assert staged_jobs(mt.api._session().engine) == []  # nothing left behind


_DRIVER = """
from test_ray_executor import logged_square
t = mt.get_table('nums')
t.add_computed_column(sq=logged_square(t.n, sys.argv[1], 0.05), executor='ray')
print('done', flush=True)
"""


def test_driver_killed_leaves_the_table_and_a_rerun_computes_only_what_is_missing(
    home: Path, ray_address: str, ray_head: RayHead, tmp_path: Path
) -> None:
    t = numbers(80)
    versions = len(t.history())
    log = tmp_path / "log"
    log.touch()
    session = mt.api._session()

    def staged_rowids() -> set[int]:
        jobs = staged_jobs(session.engine)
        if not jobs:
            return set()
        with session.engine.connect() as conn:
            return set(conn.execute(sa.text(f"SELECT _rowid FROM mt_fill_{jobs[0]['key']}")).scalars())

    with child(session, _DRIVER, str(log), env=ray_head.driver_env()) as driver:
        assert driver.poll() is None
        wait_for(lambda: len(staged_rowids()) >= 10 or driver.poll() is not None, 180, "a staged range")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    staged = staged_rowids()
    assert 10 <= len(staged) < 80
    workers = {pid for pid, _ in log_lines(log)}
    wait_for(lambda: not any(alive(pid) for pid in workers), 60, "Ray to stop the dead driver's workers")
    first_run = len(log_lines(log))

    t = mt.get_table("nums")
    assert t.columns == ["n"] and len(t.history()) == versions  # the table is as it was
    status = t.add_computed_column(sq=logged_square(t.n, str(log), 0.05), executor=ray_address, quiet=True)
    rerun = [n for _, n in log_lines(log)[first_run:]]
    assert sorted(set(rerun)) == sorted(rerun) and len(rerun) == 80 - len(staged)  # only what was not staged
    assert (status.num_rows, status.num_computed_values, status.num_excs) == (80, 80, 8)
    assert t.order_by(t.n).select(t.sq).collect()["sq"] == [expected_square(n) for n in range(80)]
    assert staged_jobs(session.engine) == []


def test_media_through_the_workers_cache_to_a_destination_with_progress(
    clean_env: Path,
    postgres_server: Any,
    ray_address: str,
    http_server: FaultServer,
    s3_server: S3Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.mkdir()
    (clean_env / "config.toml").write_text(  # the workers get the bucket's settings with the session's
        f'[buckets."s3://{s3_server.private_bucket}"]\n'
        f'endpoint = "{s3_server.endpoint}"\nregion = "{s3_server.region}"\n'
        f'access_key_id = "{s3_server.access_key_id}"\nsecret_access_key = "{s3_server.secret_access_key}"\n'
    )
    mt.init(home=clean_env, db_url=postgres_server.new_database(), quiet=True, progress=True)
    sizes = [(40 + i, 30 + i) for i in range(4)]
    paths = [f"ray/{i}.jpg" for i in range(4)]
    urls = [
        http_server.put(path, mediagen.make_jpeg(tmp_path / f"{i}.jpg", size=size, color=(60 * i, 90, 30)).read_bytes())
        for i, (path, size) in enumerate(zip(paths, sizes, strict=True))
    ]
    missing = http_server.url("ray/missing.jpg")
    t = mt.create_table("pics", {"image": mt.Image}, if_exists="replace")
    t.insert([{"image": url} for url in [*urls, missing]], quiet=True)
    capsys.readouterr()

    t.add_computed_column(w=t.image.width, executor=ray_address)
    out, err = capsys.readouterr()
    assert out == "Added 5 column values with 1 error.\n"  # the usual status line, from the driver
    assert "Computing `w`" in err and "5/5" in err  # one progress bar, fed by the workers' ranges
    prefix = f"ray-{tmp_path.name}/"
    t.add_computed_column(
        thumb=t.image.resize((16, 12)),
        destination=f"s3://{s3_server.private_bucket}/{prefix}",
        executor=ray_address,
        quiet=True,
    )
    rows = t.select(t.image.fileurl, t.w, t.w.errortype, t.w.errormsg, thumb=t.thumb.fileurl).collect()
    by_url = {r["image_fileurl"]: r for r in rows}
    assert [by_url[url]["w"] for url in urls] == [w for w, _ in sizes]
    assert by_url[missing]["w_errortype"] == "MediaNotFound" and missing in by_url[missing]["w_errormsg"]
    thumbs = [by_url[url]["thumb"] for url in urls]
    assert all(u.startswith(f"s3://{s3_server.private_bucket}/{prefix}") for u in thumbs)
    listed = s3_server.client.list_objects_v2(Bucket=s3_server.private_bucket, Prefix=prefix)["Contents"]
    assert sorted(f"s3://{s3_server.private_bucket}/{o['Key']}" for o in listed) == sorted(thumbs)
    # Each image was downloaded once, by a worker, into the machine's file cache; the second column
    # and the driver's own reads found it there.
    assert [http_server.count(p) for p in paths] == [1, 1, 1, 1]
    assert all(Path(p).is_file() for p in t.select(t.image.localpath).where(t.w > 0).collect()["image_localpath"])
    assert [http_server.count(p) for p in paths] == [1, 1, 1, 1]


_INSERTER = """
t = mt.get_table('nums')
stop = pathlib.Path(sys.argv[1])
batches = 0
while not stop.exists() and batches < 300:
    t.insert([{'n': 1000 + batches * 5 + i} for i in range(5)], executor='local', quiet=True)
    batches += 1
    time.sleep(0.05)
print(batches, flush=True)
"""

_READER = """
t = mt.get_table('nums')
stop = pathlib.Path(sys.argv[1])
reads = 0
while not stop.exists() and reads < 3000:
    assert len(t.select(t.n).collect()) >= 100
    reads += 1
    time.sleep(0.05)
print(reads, flush=True)
"""

_LOSER = """
t = mt.get_table('nums')

@mt.udf
def slow(n: int, flag: str) -> int:
    pathlib.Path(flag).touch()
    time.sleep(0.05)
    return n + 1

try:
    t.add_computed_column(slower=slow(t.n, sys.argv[1]), quiet=True)  # on Ray: the config's executor
    print('stored', flush=True)
except mt.ConcurrentChange as exc:
    print('refused', exc, flush=True)
"""


def test_processes_share_a_postgres_catalog_with_ray_as_the_configured_executor(
    clean_env: Path, postgres_server: Any, ray_address: str, ray_head: RayHead, tmp_path: Path
) -> None:
    clean_env.mkdir()
    (clean_env / "config.toml").write_text('executor = "ray"\nray_workers = 1\n')  # two drivers share 2 CPUs
    session = mt.init(home=clean_env, db_url=postgres_server.new_database(), quiet=True)
    assert session.settings.executor == "ray"
    t = numbers(100)
    stop, flag, log = tmp_path / "stop", tmp_path / "computing", tmp_path / "log"
    log.touch()
    env = ray_head.driver_env()
    with (
        child(session, _INSERTER, str(stop), env=env) as inserter,
        child(session, _READER, str(stop), env=env) as reader,
    ):
        status = t.add_computed_column(sq=logged_square(t.n, str(log), 0.01), quiet=True)  # no executor=: Ray
        assert status.num_excs > 0  # n ending in 7
        # The fill's rows (n < 100) were computed by Ray workers; rows the inserter adds once the column
        # exists are computed by the inserter itself (executor='local'), so they do not count here.
        workers = {pid for pid, n in log_lines(log) if n < 100}
        assert workers and not workers & {os.getpid(), inserter.pid, reader.pid}
        with child(session, _LOSER, str(flag), env=env) as loser:
            wait_for(lambda: flag.exists() or loser.poll() is not None, 180, "the other driver to compute")
            t.add_column(note=mt.String)  # a schema change commits while the other driver computes
            outcome = finish(loser).strip()
        stop.touch()
        batches = int(finish(inserter))
        assert int(finish(reader)) > 0
    assert outcome.startswith("refused") and "'nums'" in outcome  # the loser is told, and stored nothing
    t = mt.get_table("nums")
    assert t.columns == ["n", "sq", "note"]
    rows = t.select(t.n, t.sq).collect()
    assert len(rows) == 100 + 5 * batches and batches > 0
    assert all(r["sq"] == expected_square(r["n"]) for r in rows)  # rows inserted during the fill too
    assert staged_jobs(session.engine) == []


_CLIENT = """
t = mt.get_table('nums')

@mt.udf
def logged_cube(n: int, log: str) -> int:
    import os
    with open(log, 'a') as file:
        file.write(f'{os.getpid()} {n}\\n')
    if n == 13:
        raise ValueError('no cube for 13')
    return n ** 3

status = t.add_computed_column(cube=logged_cube(t.n, sys.argv[1]), executor=sys.argv[2], quiet=True)
print(status.num_rows, status.num_excs, flush=True)
"""


def test_a_ray_client_address_computes_on_the_cluster(
    clean_env: Path, ray_driver: None, ray_head: RayHead, tmp_path: Path
) -> None:
    # SQLite only: a client connection is independent of the catalog (PostgreSQL runs in the tests above), and
    # each one starts a proxy on the head (~10 s). The fill runs in a driver of its own: Ray allows one
    # connection per process, and this one may hold a direct one.
    session = mt.init(home=clean_env, quiet=True)
    t = numbers(40)
    log = tmp_path / "log"
    log.touch()
    env = {**ray_head.driver_env(), "MEDIATABLE_RAY_WORKERS": "1"}  # a client job starts new workers
    with child(session, _CLIENT, str(log), ray_head.client_address, env=env) as driver:
        out, err = driver.communicate(timeout=240)
        assert driver.returncode == 0, err + ray_head.client_server_logs()  # the head's side of the connection
        assert out.split() == ["40", "1"]
        workers = {pid for pid, _ in log_lines(log)}
    assert workers and driver.pid not in workers  # computed by the cluster's workers, not the client
    rows = t.select(t.n, t.cube, t.cube.errormsg).order_by(t.n).collect()
    assert [r["cube"] for r in rows] == [None if n == 13 else n**3 for n in range(40)]
    assert rows[13]["cube_errormsg"] == "no cube for 13"


def test_the_local_executor_needs_no_ray_and_a_missing_ray_is_a_clear_error(clean_env: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules['ray'] = None  # as if Ray were not installed: importing it fails
        import mediatable as mt
        mt.init(home={str(tmp_path / "home")!r}, quiet=True)
        t = mt.create_table('nums', {{'n': mt.Int}})
        t.insert([{{'n': 1}}], quiet=True)
        t.add_computed_column(m=t.n + 1, quiet=True)  # the default executor: local
        print(t.select(t.m).collect()['m'])
        try:
            t.add_computed_column(k=t.n + 2, executor='ray', quiet=True)
        except mt.MissingDependency as exc:
            print(exc)
        print(t.columns)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    lines = out.stdout.splitlines()[1:]  # after "Created table 'nums'."
    assert lines[0] == "[2]"
    assert lines[1].startswith("executor='ray' needs Ray: pip install 'mediatable[ray]'")
    assert lines[2] == "['n', 'm']"


def test_executor_setting_is_checked(clean_env: Path) -> None:
    with pytest.raises(mt.ConfigError, match="executor must be 'local', 'ray' or 'ray://host:port', not 'spark'"):
        mt.init(home=clean_env, quiet=True, executor="spark")
    clean_env.mkdir()
    (clean_env / "config.toml").write_text('executor = "ray://10.0.0.5:10001"\nray_workers = 3\n')
    settings = mt.init(home=clean_env, quiet=True).settings
    assert (settings.executor, settings.ray_workers) == ("ray://10.0.0.5:10001", 3)
    t = mt.create_table("nums", {"n": mt.Int})
    with pytest.raises(mt.ConfigError, match="not 'ray:/nowhere'"):
        t.add_computed_column(m=t.n + 1, executor="ray:/nowhere")
    assert t.columns == ["n"]


def test_a_cluster_of_two_nodes_refuses_a_sqlite_catalog_and_media_without_a_destination(
    clean_env: Path, postgres_server: Any, ray_address: str, ray_second_node: None, tmp_path: Path
) -> None:
    # Workers on another machine could not reach a catalog file or media on this machine's disk. The
    # checks come before any actor starts: nothing runs on the second node.
    mt.init(home=clean_env, quiet=True)  # an SQLite catalog
    t = numbers(5)
    t.add_computed_column(m=t.n + 1, quiet=True)  # local: fine
    for refused in (
        lambda: t.add_computed_column(k=t.n + 2, executor=ray_address),
        lambda: t.recompute_columns("m", executor=ray_address),
        lambda: t.insert([{"n": 9}], executor=ray_address),
    ):
        with pytest.raises(mt.ConfigError, match="the catalog is an SQLite file on this machine"):
            refused()
    assert t.columns == ["n", "m"] and len(t.select(t.n).collect()) == 5

    mt.init(home=clean_env, db_url=postgres_server.new_database(), quiet=True)
    t = mt.create_table("pics", {"image": mt.Image})
    t.insert([{"image": str(mediagen.make_jpeg(tmp_path / "a.jpg", size=(20, 10), color=(1, 2, 3)))}], quiet=True)
    with pytest.raises(mt.ConfigError, match=r"column 'thumb' generates media.*give it a destination="):
        t.add_computed_column(thumb=t.image.resize((8, 4)), executor=ray_address)
    assert t.columns == ["image"]
