"""PyTorch datasets over queries that combine rows: joins and grouped queries run once when the dataset is
made, their rows are dealt to workers like a table's, and a join's images are fetched by the workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mediatable as mt
from servers.http import FaultServer
from test_pytorch import color, home, make_table, pixel_row, worker_loader, workers, workers_joined

__all__ = ["home", "workers", "workers_joined"]  # fixtures shared with test_pytorch


def labelled(http_server: FaultServer, tmp_path: Path) -> tuple[mt.Table, mt.Table]:
    images = make_table(http_server, tmp_path)
    labels = mt.create_table("labels", {"i": mt.Int, "name": mt.String})
    labels.insert([{"i": i, "name": f"n{i}"} for i in range(12) if i != 5], quiet=True)  # row 5 has no label
    return images, labels


def test_a_join_streams_its_rows_and_the_workers_fetch_its_images(
    home: Path, http_server: FaultServer, tmp_path: Path, workers: str
) -> None:
    images, labels = labelled(http_server, tmp_path)
    query = images.join(labels, on=images.i == labels.i).order_by(images.i).select(images.image, images.i, labels.name)
    ds = query.to_pytorch_dataset(batch_size=2)
    assert len(ds) == 11 and http_server.count() == 0  # made without fetching an image
    batches = list(worker_loader(ds, workers, 2, batch_size=2))
    ids = [i for b in batches for i in b["i"].tolist()]
    assert ids == [i for i in range(12) if i != 5]  # batches of 2 from the workers in turn: the query's order
    assert all(pixel_row(image) == i for b in batches for image, i in zip(b["image"], b["i"].tolist(), strict=True))
    assert [n for b in batches for n in b["name"]] == [f"n{i}" for i in ids]
    assert http_server.count() == 11  # one GET per image, by the workers
    ranks = [[s["i"].item() for s in query.to_pytorch_dataset(rank=r, world_size=2, batch_size=3)] for r in (0, 1)]
    assert ranks == [[0, 1, 2, 7, 8, 9], [3, 4, 6, 10, 11]]
    left = images.join(labels, on=images.i == labels.i, how="left").order_by(images.i).select(images.i, labels.name)
    assert [s["name"] for s in left.to_pytorch_dataset()][4:7] == ["n4", None, "n6"]


def test_a_grouped_query_is_dealt_to_workers(
    home: Path, http_server: FaultServer, tmp_path: Path, workers: str
) -> None:
    t = make_table(http_server, tmp_path)
    grouped = t.group_by(t.even).order_by(t.even).select(t.even, n=mt.functions.count(t.i), total=mt.functions.sum(t.i))
    ds = grouped.to_pytorch_dataset()
    assert len(ds) == 2
    loader = worker_loader(ds, workers, 2, batch_size=None)
    rows = sorted((s["even"].item(), s["n"].item(), s["total"].item()) for s in loader)
    assert rows == [(False, 6, 36), (True, 6, 30)]  # each group once, over both workers
    distinct = t.select(t.even).distinct().to_pytorch_map_dataset()
    assert sorted(distinct[i]["even"].item() for i in range(len(distinct))) == [False, True]
    assert http_server.count() == 0


def test_join_failures_follow_on_error(home: Path, http_server: FaultServer, tmp_path: Path) -> None:
    images, labels = labelled(http_server, tmp_path)
    http_server.delete(f"pics-{tmp_path.name}/3.png")
    query = images.join(labels, on=images.i == labels.i).order_by(images.i).select(images.image, images.i)
    with pytest.raises(mt.ComputeError, match=r"row 3: 'image' failed: MediaNotFound"):
        list(query.to_pytorch_dataset())
    lenient = query.to_pytorch_dataset(on_error="skip")
    kept = [s["i"].item() for s in lenient]
    assert 3 not in kept and len(kept) == 10 and len(lenient.skipped) == 1
    assert torch.equal(next(iter(lenient))["image"][:, 0, 0], torch.tensor(color(0), dtype=torch.uint8))
