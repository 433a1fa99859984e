"""PyTorch datasets over queries: rows, order and splits per worker and rank, one GET per URL across worker
processes, on_error, shuffling, the map-style variant, and workers that must not be forked after I/O.

Images are PNGs whose pixel encodes their row, served by the real fault-injecting HTTP server. DataLoader
workers run as real processes started by a forkserver that has imported torch and mediatable once
(spawned workers would import them again, seconds each).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import json
import logging
import multiprocessing
import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader

import mediagen
import mediatable as mt
from mediatable.training.pytorch import TableIterableDataset
from servers.cloud import free_port
from servers.http import FaultServer

N = 12
BATCH_TIMEOUT = 120
"""Seconds a DataLoader waits for a worker's batch: a stuck worker fails its test instead of hanging the suite."""


@pytest.fixture(scope="module")
def workers() -> str:
    """The start method for DataLoader workers: a forkserver that preloads the dataset modules."""
    multiprocessing.set_forkserver_preload(["mediatable.training.pytorch"])  # no effect once it runs
    return "forkserver"


@pytest.fixture(autouse=True)
def workers_joined() -> Iterator[None]:
    """After each test no DataLoader worker it started is left: each is joined (killed if it does not end in time)."""
    before = set(multiprocessing.active_children())
    yield
    gc.collect()  # a DataLoader iterator stops its workers when it is collected
    left = [child for child in multiprocessing.active_children() if child not in before]
    for child in left:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
    assert not [child for child in left if child.exitcode is None], "a worker could not be stopped"


@contextlib.contextmanager
def raised_by_a_worker(expected: type[Exception], match: str) -> Iterator[None]:
    """`pytest.raises` for an error a DataLoader re-raised from a worker; the loaders then stop their workers at once.

    torch re-raises a worker's error from a frame that keeps it in a local: a reference cycle through its
    traceback, which holds the loader's iterator and the test's frame (other loaders too). Left to the garbage
    collector, an iterator's queues are finalized before the iterator, its workers never get their stop signal,
    and each is terminated only after a 5 s join. Cleared frames, and no reference to the error kept here, break
    the cycles: the loaders stop their workers when the test ends.
    """
    with pytest.raises(expected, match=match) as info:
        yield
    traceback.clear_frames(info.value.__traceback__)
    del info  # the error's traceback holds this generator's frame too


def worker_loader(dataset: Any, context: str, num_workers: int, **options: Any) -> DataLoader:  # type: ignore[type-arg]
    """A DataLoader with worker processes started by `context`, each batch waited for at most BATCH_TIMEOUT s."""
    return DataLoader(
        dataset, num_workers=num_workers, multiprocessing_context=context, timeout=BATCH_TIMEOUT, **options
    )


@pytest.fixture
def home(clean_env: Path) -> Path:
    """A session on an SQLite catalog (the tests of workers' own connections also run on PostgreSQL)."""
    mt.init(home=clean_env, quiet=True)
    return clean_env


def color(i: int) -> tuple[int, int, int]:
    return (i * 10 % 256, 255 - i, 7)


def make_table(http_server: FaultServer, tmp_path: Path, n: int = N, name: str = "pics") -> mt.Table:
    """`n` rows: a PNG whose pixels are `color(i)`, `i`, a float, a bool, JSON, an array, a timestamp."""
    folder = f"{name}-{tmp_path.name}"
    rows = []
    for i in range(n):
        path = mediagen.make_png(tmp_path / f"{i}.png", size=(6, 4), color=color(i))
        rows.append(
            {
                "image": http_server.put(f"{folder}/{i}.png", path.read_bytes()),
                "i": i,
                "x": i / 2,
                "even": i % 2 == 0,
                "meta": {"box": [i, i + 1], "tag": f"t{i}"},
                "vec": np.arange(3) + i,
                "at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
            }
        )
    schema = {
        "image": mt.Image,
        "i": mt.Int,
        "x": mt.Float,
        "even": mt.Bool,
        "meta": mt.Json,
        "vec": mt.Array(mt.Int, (3,)),
        "at": mt.Timestamp,
    }
    t = mt.create_table(name, schema)
    t.insert(rows, quiet=True)
    return t


def pixel_row(image: torch.Tensor) -> int:
    """The row a 'pt' image belongs to, from its red channel."""
    return image[0, 0, 0].item() // 10


def test_values_become_tensors_in_query_order(db_home: Path, http_server: FaultServer, tmp_path: Path) -> None:
    t = make_table(http_server, tmp_path)
    ds = t.where(t.i >= 2).order_by(t.i, asc=False).to_pytorch_dataset()
    assert len(ds) == N - 2
    samples = list(ds)
    assert [s["i"].item() for s in samples] == list(range(N - 1, 1, -1))
    first = samples[0]
    i = N - 1
    assert first["image"].shape == (3, 4, 6) and first["image"].dtype == torch.uint8  # as PILToTensor
    assert torch.equal(first["image"][:, 2, 3], torch.tensor(color(i), dtype=torch.uint8))
    assert first["i"].dtype == torch.int64 and first["x"].item() == i / 2 and first["x"].dtype == torch.float64
    assert first["even"].item() is (i % 2 == 0)
    assert torch.equal(first["meta"]["box"], torch.tensor([i, i + 1])) and first["meta"]["tag"] == f"t{i}"
    assert torch.equal(first["vec"], torch.arange(3) + i)
    assert first["at"].item() == dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() + i

    batch = next(iter(DataLoader(ds, batch_size=4)))  # default collation stacks everything
    assert batch["image"].shape == (4, 3, 4, 6) and batch["i"].tolist() == [11, 10, 9, 8]
    assert batch["image"].is_contiguous() and batch["image"].dtype == torch.uint8
    assert [pixel_row(image) for image in batch["image"]] == [11, 10, 9, 8]


def test_image_formats_and_transform(home: Path, http_server: FaultServer, tmp_path: Path) -> None:
    t = make_table(http_server, tmp_path, n=2)
    arrays = list(t.order_by(t.i).select(t.image).to_pytorch_dataset(image_format="np"))
    assert arrays[1]["image"].shape == (4, 6, 3) and arrays[1]["image"].dtype == np.uint8
    assert tuple(arrays[1]["image"][0, 0]) == color(1)
    images = list(t.order_by(t.i).select(t.image).to_pytorch_dataset(image_format="pil"))
    assert isinstance(images[0]["image"], PIL.Image.Image) and images[0]["image"].getpixel((0, 0)) == color(0)
    small = t.order_by(t.i).select(t.i, thumb=t.image.resize((3, 2)))  # an image computed by the query
    shapes = [tuple(s["thumb"].shape) for s in small.to_pytorch_dataset()]
    assert shapes == [(3, 2, 3), (3, 2, 3)]
    brightness = lambda s: (s["image"].float().mean().item() > 0, s["i"].item())  # noqa: E731
    pairs = list(t.order_by(t.i).to_pytorch_dataset(transform=brightness))
    assert pairs == [(True, 0), (True, 1)]
    with pytest.raises(mt.InvalidArgument, match="image_format"):
        t.to_pytorch_dataset(image_format="jpeg")


def test_rows_and_order_per_worker_and_rank(
    db_home: Path, http_server: FaultServer, tmp_path: Path, workers: str
) -> None:
    t = make_table(http_server, tmp_path, n=14)
    everything: list[int] = []
    for rank in (0, 1):
        ds = t.order_by(t.i).to_pytorch_dataset(batch_size=3, rank=rank, world_size=2)
        in_process = [s["i"].item() for s in ds]
        assert len(ds) == len(in_process)
        loader = worker_loader(ds, workers, 2, batch_size=3)
        batches = [(b["i"].tolist(), [pixel_row(image) for image in b["image"]]) for b in loader]
        # Blocks of 3 go round-robin to shard = worker * 2 + rank; the loader takes its workers' batches in turn.
        expected_blocks = [list(range(b * 3, min(b * 3 + 3, 14))) for b in range(rank, 5, 2)]
        assert [ids for ids, _ in batches] == expected_blocks
        assert all(ids == pixels for ids, pixels in batches)  # each image belongs to its row
        assert in_process == [i for block in expected_blocks for i in block]
        everything += in_process
    assert sorted(everything) == list(range(14))  # each row exactly once over both ranks


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # more workers than 2 cores
@pytest.mark.parametrize("num_workers", [2, 3, 4])
def test_each_url_is_fetched_once_by_all_workers_and_the_second_epoch_fetches_nothing(
    home: Path, http_server: FaultServer, tmp_path: Path, workers: str, num_workers: int
) -> None:
    names = [f"once-{tmp_path.name}/{i}.png" for i in range(4)]
    for i, name in enumerate(names):
        http_server.put(name, mediagen.make_png(tmp_path / f"{i}.png", size=(6, 4), color=color(i)).read_bytes())
    # Every URL in `num_workers` consecutive rows, which the round-robin deals to all the workers.
    rows = len(names) * num_workers
    t = mt.create_table("shared", {"image": mt.Image, "i": mt.Int})
    t.insert([{"image": http_server.url(names[i // num_workers]), "i": i} for i in range(rows)], quiet=True)
    http_server.set_fault(None, latency=0.3)  # the requests of the workers for one URL overlap
    ds = t.order_by(t.i).to_pytorch_dataset()
    loader = worker_loader(ds, workers, num_workers, batch_size=None, persistent_workers=True)
    first = sorted((s["i"].item(), pixel_row(s["image"])) for s in loader)
    assert first == [(i, i // num_workers) for i in range(rows)]
    assert {name: http_server.count(name) for name in names} == dict.fromkeys(names, 1)
    second = sorted(s["i"].item() for s in loader)
    assert second == list(range(rows)) and http_server.count() == len(names)


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_each_row_once_per_epoch_for_any_number_of_workers_and_ranks(
    home: Path, http_server: FaultServer, tmp_path: Path, workers: str
) -> None:
    t = make_table(http_server, tmp_path, n=23)
    for world_size, num_workers in [(1, 0), (1, 1), (1, 4), (2, 0), (2, 2), (3, 3)]:
        seen: list[int] = []
        for rank in range(world_size):
            ds = t.select(t.i, t.image).to_pytorch_dataset(batch_size=2, rank=rank, world_size=world_size)
            if num_workers:
                loader = worker_loader(ds, workers, num_workers, batch_size=2)
            else:
                loader = DataLoader(ds, batch_size=2)
            batches = [(b["i"].tolist(), [pixel_row(image) for image in b["image"]]) for b in loader]
            assert all(ids == pixels for ids, pixels in batches)  # each image belongs to its row
            rows = [i for ids, _ in batches for i in ids]
            assert len(rows) == len(ds)
            seen += rows
        assert sorted(seen) == list(range(23)), (world_size, num_workers)  # each row exactly once


DISTRIBUTED = """
import datetime, json, sys
import torch.distributed as dist
import mediatable as mt

rank, address, home = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group(
    "gloo", init_method=address, rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60)
)
try:
    mt.init(home=home, quiet=True)
    t = mt.get_table("pics")
    ds = t.order_by(t.i).to_pytorch_dataset(batch_size=2)  # rank and world size from torch.distributed
    rows = [s["i"].item() for s in ds]
    print(json.dumps({"rank": ds.rank, "world_size": ds.world_size, "len": len(ds), "rows": rows}))
finally:
    dist.destroy_process_group()
"""


def test_ranks_from_torch_distributed(home: Path, http_server: FaultServer, tmp_path: Path) -> None:
    make_table(http_server, tmp_path, n=9)
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}  # loopback: the only interface the tests have
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", DISTRIBUTED, str(rank), address, str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [process.communicate(timeout=180) for process in ranks]
    finally:
        for process in ranks:
            process.kill()
            process.wait(timeout=10)
    assert [process.returncode for process in ranks] == [0, 0], [err for _, err in outputs]
    found = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    assert [(f["rank"], f["world_size"]) for f in found] == [(0, 2), (1, 2)]
    assert found[0]["rows"] == [0, 1, 4, 5, 8] and found[1]["rows"] == [2, 3, 6, 7]  # blocks of 2, dealt in turn
    assert [f["len"] for f in found] == [5, 4]


@pytest.fixture
def with_failures(home: Path, http_server: FaultServer, tmp_path: Path) -> mt.Table:
    """Eight rows; row 3's image is missing (its URL has a secret), row 5's is corrupt, row 6's truncated."""
    t = make_table(http_server, tmp_path, n=8, name="flaky")
    folder = f"flaky-{tmp_path.name}"
    http_server.delete(f"{folder}/3.png")
    t.update({"image": http_server.url(f"{folder}/3.png?token=SECRET42")}, where=t.i == 3)
    http_server.put(f"{folder}/5.png", mediagen.make_corrupt_jpeg(tmp_path / "bad.jpg").read_bytes())
    truncated = mediagen.make_truncated_jpeg(tmp_path / "cut.jpg", size=(64, 48))
    t.update({"image": http_server.put(f"{folder}/6.jpg", truncated.read_bytes())}, where=t.i == 6)
    return t


def test_on_error_raise_names_row_column_and_url(with_failures: mt.Table) -> None:
    t = with_failures
    with pytest.raises(mt.ComputeError) as info:
        list(t.order_by(t.i).to_pytorch_dataset())
    message = str(info.value)
    assert "'flaky' row 4" in message and "'image'" in message and "MediaNotFound" in message
    assert "3.png" in message and "SECRET42" not in message
    assert info.value.row == 4 and info.value.column == "image"  # row ids start at 1
    assert isinstance(info.value.__cause__, mt.MediaNotFound)
    with pytest.raises(mt.ComputeError, match=r"row 7: 'image' failed: MediaDecodeError: cannot decode image"):
        list(t.order_by(t.i).where(t.i > 5).to_pytorch_dataset())  # the truncated one fails only when decoded


def test_on_error_skip_leaves_rows_out_counts_them_and_logs_at_epoch_end(
    with_failures: mt.Table, caplog: pytest.LogCaptureFixture
) -> None:
    t = with_failures
    ds = t.order_by(t.i).to_pytorch_dataset(on_error="skip")
    with caplog.at_level(logging.WARNING, logger="mediatable.training"):
        kept = [s["i"].item() for s in ds]
    assert kept == [0, 1, 2, 4, 7]
    assert len(ds.skipped) == 3 and ds.skipped.total == 8
    assert dict(ds.skipped.kinds) == {"not found": 1, "decode error": 2}
    (record,) = caplog.records
    assert record.getMessage().startswith("epoch done: skipped 3 of 8 rows of 'flaky' (2 decode error, 1 not found)")
    assert "row 4: 'image': MediaNotFound" in record.getMessage() and "SECRET42" not in record.getMessage()


def log_to(path: Path, worker_id: int) -> None:
    """A DataLoader `worker_init_fn`: the worker's mediatable log lines go to `path`."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("mediatable.training").addHandler(handler)


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers, 2 cores
def test_failures_in_workers(with_failures: mt.Table, workers: str, tmp_path: Path) -> None:
    t = with_failures
    ds = t.order_by(t.i).to_pytorch_dataset(on_error="skip")
    log = tmp_path / "workers.log"
    init = functools.partial(log_to, log)
    loader = worker_loader(ds, workers, 2, batch_size=None, worker_init_fn=init)
    assert sorted(s["i"].item() for s in loader) == [0, 1, 2, 4, 7]
    # One summary for the epoch, of both workers' rows (the last worker to finish logs it).
    (line,) = log.read_text().splitlines()
    assert line.startswith("epoch done: skipped 3 of 8 rows of 'flaky' (2 decode error, 1 not found); row ")
    assert line.endswith("(rank 0 of 1, all 2 workers)") and "row 4: 'image': MediaNotFound" in line
    persistent = worker_loader(ds, workers, 3, batch_size=None, worker_init_fn=init, persistent_workers=True)
    for _ in range(2):  # the same workers, two epochs: one summary each
        assert sorted(s["i"].item() for s in persistent) == [0, 1, 2, 4, 7]
    lines = log.read_text().splitlines()
    assert len(lines) == 3 and all(later.startswith(line[:60]) for later in lines[1:])
    assert all(later.endswith("(rank 0 of 1, all 3 workers)") for later in lines[1:])
    assert not list((ds._readers.source.sessions.settings.home / "training" / "epochs").iterdir())  # tallies removed
    loader = worker_loader(t.order_by(t.i).to_pytorch_dataset(), workers, 2)
    with raised_by_a_worker(mt.ComputeError, match=r"'flaky' row [467]: 'image' failed: Media(NotFound|DecodeError)"):
        list(loader)  # the first failure to reach the loader, which does not wait for the others


def test_rows_deleted_after_the_snapshot(home: Path, http_server: FaultServer, tmp_path: Path) -> None:
    t = make_table(http_server, tmp_path, n=4)
    strict, lenient = t.order_by(t.i).to_pytorch_dataset(), t.order_by(t.i).to_pytorch_dataset(on_error="skip")
    t.delete(where=t.i == 2)
    with pytest.raises(mt.ComputeError, match="row 3: the row failed: RowDeleted"):
        list(strict)
    assert [s["i"].item() for s in lenient] == [0, 1, 3]


def test_shuffle_gives_a_new_order_each_epoch_and_the_same_split(
    home: Path, http_server: FaultServer, tmp_path: Path
) -> None:
    t = make_table(http_server, tmp_path, n=20)
    ds = t.select(t.i).to_pytorch_dataset(shuffle=True, seed=3)
    epochs = [[s["i"].item() for s in ds] for _ in range(3)]
    assert all(sorted(order) == list(range(20)) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 3
    again = t.select(t.i).to_pytorch_dataset(shuffle=True, seed=3)
    assert [s["i"].item() for s in again] == epochs[0]  # the seed fixes the orders
    # Ranks permute alike: with set_epoch, their shares cover each row once.
    shares = []
    for rank in range(3):
        part = t.select(t.i).to_pytorch_dataset(shuffle=True, seed=3, rank=rank, world_size=3)
        part.set_epoch(5)
        shares.append([s["i"].item() for s in part])
    assert sorted(i for share in shares for i in share) == list(range(20))


def test_map_dataset_with_a_seeded_shuffling_loader(home: Path, http_server: FaultServer, tmp_path: Path) -> None:
    t = make_table(http_server, tmp_path, n=10)
    ds = t.order_by(t.i).to_pytorch_map_dataset()
    assert len(ds) == 10 and ds[7]["i"].item() == 7 and pixel_row(ds[7]["image"]) == 7

    def epochs(seed: int) -> list[list[int]]:
        loader = DataLoader(ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return [[i for batch in loader for i in batch["i"].tolist()] for _ in range(2)]

    first = epochs(11)
    assert all(sorted(order) == list(range(10)) for order in first) and first[0] != first[1]
    assert epochs(11) == first
    with pytest.raises(IndexError, match="out of range"):
        ds[10]


def test_map_dataset_skip_shortens_the_batch(with_failures: mt.Table, caplog: pytest.LogCaptureFixture) -> None:
    t = with_failures
    ds = t.order_by(t.i).to_pytorch_map_dataset(on_error="skip")
    with caplog.at_level(logging.WARNING, logger="mediatable.training"):
        batch = ds.__getitems__([2, 3, 4])
    assert [s["i"].item() for s in batch] == [2, 4]
    assert "left 1 of 3 rows out of a batch" in caplog.text
    with pytest.raises(mt.ComputeError, match="failed and was skipped"):
        ds[3]


def test_datasets_pickle_without_a_session(home: Path, http_server: FaultServer, tmp_path: Path) -> None:
    t = make_table(http_server, tmp_path, n=3)
    ds = t.order_by(t.i).to_pytorch_dataset(transform=lambda s: s["i"].item() * 10)
    data = pickle.dumps(ds)
    assert b"sqlalchemy" not in data and b"Engine" not in data
    copy = pickle.loads(data)
    assert isinstance(copy, TableIterableDataset) and list(copy) == [0, 10, 20]
    copy._readers.source.close()


def test_workers_forked_after_io_refuse_to_run(home: Path, http_server: FaultServer, tmp_path: Path) -> None:
    t = make_table(http_server, tmp_path, n=2)
    t.select(t.image.width).collect()  # this process has now fetched files: its I/O threads run
    loader = worker_loader(t.to_pytorch_dataset(), "fork", 1)
    with raised_by_a_worker(mt.InvalidArgument, match="multiprocessing_context='forkserver'"):
        list(loader)


def test_datasets_read_the_version_they_were_made_from_and_follow_moves(home: Path) -> None:
    t = mt.create_table("kept", {"n": mt.Int})
    t.insert([{"n": 1}, {"n": 2}], quiet=True)
    version = t.version
    old = t.get_version(version)
    snapshot = mt.create_snapshot("kept_monday", t)
    current = t.order_by(t.n).to_pytorch_dataset()
    of_old = old.order_by(old.n).to_pytorch_dataset()
    of_snapshot = snapshot.order_by(snapshot.n).to_pytorch_map_dataset()
    t.update({"n": t.n * 10})
    assert [s["n"].item() for s in of_old] == [1, 2]
    assert [of_snapshot[i]["n"].item() for i in range(2)] == [1, 2]
    mt.move("kept", "moved")  # found by id, wherever it went
    assert [s["n"].item() for s in current] == [10, 20]
    mt.drop_table("kept_monday")
    replaced = mt.create_table("moved", {"n": mt.Int}, if_exists="replace")
    replaced.insert([{"n": 5}], quiet=True)
    with pytest.raises(mt.TableNotFound, match="dropped or replaced after the dataset was made"):
        list(current)


WITHOUT_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):  # as if torch were not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
import mediatable as mt
mt.init(home=sys.argv[1], quiet=True)
t = mt.create_table("t", {"n": mt.Int})
t.insert([{"n": 1}], quiet=True)
for make in (t.to_pytorch_dataset, t.to_pytorch_map_dataset):
    try:
        make()
    except mt.MissingDependency as exc:
        print("ERROR", exc)
print(t.to_parquet(sys.argv[2]))  # exports need no torch
"""


def test_without_torch_the_datasets_name_the_pip_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(tmp_path / "home"), str(tmp_path / "t.parquet")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.splitlines()
    error = "ERROR PyTorch datasets need torch, which is not installed: pip install 'mediatable[torch]'"
    assert lines[1:3] == [error, error] and lines[3].startswith("1 row written to file://")
