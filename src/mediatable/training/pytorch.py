"""PyTorch datasets over a query: streamed (:class:`TableIterableDataset`) or by index (:class:`TableMapDataset`).

Both hold a :class:`~mediatable.training.source.RowSnapshot` — the query's recipe and a snapshot of
its row ids — or, for joins and grouped queries, the :class:`~mediatable.training.results.QueryResults`
rows; never a session: each DataLoader worker opens its own session (catalog connection,
file cache, transfer stage) from the recipe, so workers share the machine's file cache and each URL
is downloaded once, whichever workers ask. Images decode in the workers.

Workers must not be forked from a process whose object-store I/O threads are running (obstore's
runtime does not survive fork: the worker would hang on its first download). A worker forked from
such a process raises :class:`~mediatable.errors.InvalidArgument` saying to pass
`multiprocessing_context='forkserver'` (or `'spawn'`) to the DataLoader; this module tells by the
runtime's threads at the moment of the fork.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cloudpickle
import numpy as np
import torch
import torch.distributed
import torch.utils.data

from mediatable.errors import ComputeError, InvalidArgument
from mediatable.training.epochs import epoch_total
from mediatable.training.results import QueryResults
from mediatable.training.samples import SampleMaker
from mediatable.training.shards import Split, epoch_order, rank_size, shard_rows
from mediatable.training.source import RowSnapshot

log = logging.getLogger("mediatable.training")

FETCH_ROWS = 64
"""Rows a worker reads per SQL query and per pipeline run; their files download together."""

_fork_state = {"io_threads_at_fork": False, "pending": False}
_worker_heap = {"frozen_in": 0}  # the pid of the worker process that froze its heap


def _freeze_heap_once() -> None:
    """In a DataLoader worker, once its first batch is read: exempt what it holds by then from garbage collection.

    A worker holds torch, our modules and its session (about 260,000 objects); the allocations of a
    cold epoch's downloads set off collections that walk all of them (0.29 s of CPU per 1,000 files
    in `benchmarks/training.py`; 0.05 s frozen). Frozen objects are still freed by reference
    counting; only cycles among them are never collected, and they are the worker's own lasting state.
    """
    if torch.utils.data.get_worker_info() is not None and _worker_heap["frozen_in"] != os.getpid():
        _worker_heap["frozen_in"] = os.getpid()
        gc.freeze()


def _io_threads_running() -> bool:
    """Whether obstore's runtime (Tokio worker threads) runs in this process (Linux: thread names)."""
    return any("tokio" in _read(path) for path in glob.glob(f"/proc/{os.getpid()}/task/*/comm"))


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:  # the thread ended meanwhile
        return ""


def _before_fork() -> None:
    _fork_state["pending"] = _io_threads_running()


def _after_fork_in_child() -> None:
    _fork_state["io_threads_at_fork"] = _fork_state["pending"]


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _check_not_forked_from_io() -> None:
    if _fork_state["io_threads_at_fork"]:
        raise InvalidArgument(
            "this DataLoader worker was forked from a process that had already fetched files, whose I/O threads "
            "do not survive fork (the worker would hang): pass multiprocessing_context='forkserver' (or 'spawn') "
            "to the DataLoader"
        )


def distributed_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Rank and world size: the arguments, else `torch.distributed`'s (when initialized), else 0 of 1.

    Examples:
        >>> distributed_rank(None, None), distributed_rank(1, 4)
        ((0, 1), (1, 4))
    """
    dist = torch.distributed
    initialized = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if world_size is None:
        world_size = dist.get_world_size() if initialized else 1
    Split(rank=rank, world_size=world_size)  # checks the pair
    return rank, world_size


class _Readers:
    """What both datasets share: the rows, the sample maker, and the transform carried by value."""

    def __init__(self, source: RowSnapshot | QueryResults, image_format: str, transform: Any, on_error: str) -> None:
        self.source = source
        self.maker = SampleMaker(source.names, source.col_types, image_format, transform, on_error, source.table_path)

    def __getstate__(self) -> dict[str, Any]:
        # cloudpickle: a transform defined in a notebook or as a lambda reaches spawned workers too
        return {"source": self.source, "maker": cloudpickle.dumps(self.maker)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.source = state["source"]
        self.maker = cloudpickle.loads(state["maker"])


class TableIterableDataset(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """A query's rows streamed in order, split across DataLoader workers and distributed ranks.

    Made by :meth:`Query.to_pytorch_dataset <mediatable.table.Query.to_pytorch_dataset>`; see there.
    Each row is read exactly once per epoch by exactly one worker of one rank. `len()` is the
    number of rows this rank reads. The rows are those matching the query when the dataset was made.

    Lifecycle: iterating opens (in a worker: a session of that worker's process) a read of this
    reader's rows, fetching the files of the next `FETCH_ROWS` rows while the current ones are used;
    it ends with the epoch, and one summary of the rows skipped with `on_error='skip'` is logged for
    the epoch (by the last of the DataLoader's workers to finish: see :mod:`~mediatable.training.epochs`).
    """

    def __init__(
        self,
        source: RowSnapshot | QueryResults,
        *,
        image_format: str,
        transform: Callable[[dict[str, Any]], Any] | None,
        on_error: str,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int | None,
        world_size: int | None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument(f"batch_size must be a positive int, not {batch_size!r}")
        self._readers = _Readers(source, image_format, transform, on_error)
        self.rank, self.world_size = distributed_rank(rank, world_size)
        self.batch_size = batch_size
        self.seed = seed if shuffle else None
        self._epoch: int | None = None
        self._iterations = 0
        self._token = uuid.uuid4().hex[:12]  # names this dataset's epoch tallies (copies in workers share it)
        self.skipped = self._readers.maker.skipped

    def __len__(self) -> int:
        return rank_size(len(self._readers.source), self.rank, self.world_size, self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch number the shuffle order derives from (needed with several ranks, as for
        `DistributedSampler`; with one rank each epoch gets a new order by itself)."""
        self._epoch = epoch

    def _epoch_key(self, info: Any) -> tuple[int, ...]:
        if self._epoch is not None:
            return (self._epoch,)
        if self.world_size > 1:
            return (self._iterations,)  # the same on every rank; set_epoch() varies it with fresh workers
        # Every worker of one DataLoader iteration shares its base seed (worker seed - worker id).
        return (self._iterations,) if info is None else (info.seed - info.id, self._iterations)

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            _check_not_forked_from_io()
        split = Split(self.rank, self.world_size, info.id if info else 0, info.num_workers if info else 1)
        source, maker = self._readers.source, self._readers.maker
        order = epoch_order(source.rowids, self.seed, self._epoch_key(info))
        self._iterations += 1
        rows = shard_rows(order, split, self.batch_size)
        maker.skipped = self.skipped = type(maker.skipped)(source.table_path)
        batches = source.read(rows, FETCH_ROWS, check_media=False, prefetch=True)  # images decode in maker.samples
        with contextlib.closing(batches):
            for batch in batches:
                _freeze_heap_once()
                yield from maker.samples(batch)
        self._summarize(split, info, self._iterations - 1)

    def _summarize(self, split: Split, info: Any, iteration: int) -> None:
        """Log the epoch's skipped rows once: this reader's alone, or the last worker to finish logs all of theirs."""
        rank = f"rank {split.rank} of {split.world_size}"
        if split.num_workers == 1:
            if self.skipped:
                log.warning("epoch done: %s (%s)", self.skipped.summary(), rank)
            return
        folder = self._readers.source.session().settings.home / "training" / "epochs"
        # All workers of one DataLoader iteration share its base seed; persistent workers count iterations.
        epoch = f"{self._token}-r{split.rank}-{info.seed - info.id}-{iteration}"
        total = epoch_total(folder, epoch, split.worker, split.num_workers, self.skipped)
        if total:
            log.warning("epoch done: %s (%s, all %d workers)", total.summary(), rank, split.num_workers)


class TableMapDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A query's rows by index (`ds[i]` is row `i` in the query's order) for samplers that shuffle.

    Made by :meth:`Query.to_pytorch_map_dataset <mediatable.table.Query.to_pytorch_map_dataset>`.
    A DataLoader with a batch size fetches each batch at once (`__getitems__`): its files download
    together, through the shared file cache. With `on_error='skip'` rows that fail are left out of
    their batch (a shorter batch) and logged; `ds[i]` alone of such a row raises.
    """

    def __init__(
        self,
        source: RowSnapshot | QueryResults,
        *,
        image_format: str,
        transform: Callable[[dict[str, Any]], Any] | None,
        on_error: str,
    ) -> None:
        self._readers = _Readers(source, image_format, transform, on_error)
        self.skipped = self._readers.maker.skipped

    def __len__(self) -> int:
        return len(self._readers.source)

    def __getitem__(self, index: int) -> Any:
        found = self.__getitems__([index])
        if not found:
            raise ComputeError(
                f"row {index} of the dataset over {self._readers.source.table_path!r} failed and was skipped "
                f"({self.skipped.examples[-1]}); a DataLoader with a batch_size leaves such rows out of their batch",
                table=self._readers.source.table_path,
                row=int(self._rowids([index])[0]),
            )
        return found[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        _check_not_forked_from_io()
        source, maker = self._readers.source, self._readers.maker
        before = len(maker.skipped)
        batches = source.read(self._rowids(indices), len(indices) or 1, check_media=False)
        samples = [sample for batch in batches for sample in maker.samples(batch)]
        _freeze_heap_once()
        if len(maker.skipped) > before:
            left_out = len(maker.skipped) - before
            log.warning("left %d of %d rows out of a batch: %s", left_out, len(indices), maker.skipped.summary())
        return samples

    def _rowids(self, indices: Sequence[int]) -> np.ndarray:
        rowids = self._readers.source.rowids
        try:
            return rowids[np.asarray(indices, dtype=np.int64)]
        except IndexError:
            raise IndexError(f"index out of range for a dataset of {len(rowids)} rows: {list(indices)}") from None
