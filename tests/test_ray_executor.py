"""The Ray executor against a real Ray head on 127.0.0.1 (one per test session), with the real
PostgreSQL server and the loopback media servers: fills, recomputes and inserts on Ray workers,
per-cell errors, media through the workers' caches, destinations, and the faults (a worker killed
mid-run, a driver killed and the work run again).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import mediatable as mt


@mt.udf
def triple_or_fail(n: int) -> int:
    if n % 7 == 3:
        raise ValueError(f"no triple for {n}")
    return 3 * n


@mt.udf
def logged_square(n: int, log: str, delay: float) -> int:
    """n*n, after `delay` seconds; appends `<pid> <n>` to the file `log` (what the fault tests count)."""
    time.sleep(delay)
    with open(log, "a") as file:
        file.write(f"{os.getpid()} {n}\n")
    return n * n


@pytest.fixture
def home(clean_env: Path, db_url: str) -> Path:
    mt.init(home=clean_env, db_url=db_url, quiet=True)
    return clean_env


def numbers(count: int, name: str = "nums") -> mt.Table:
    t = mt.create_table(name, {"n": mt.Int}, if_exists="replace")
    t.insert([{"n": i} for i in range(count)], quiet=True)
    return t


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
