"""Dealing a snapshot of rows to distributed ranks and DataLoader workers: each row exactly once per epoch.

The rows (in query order, or permuted for the epoch) are cut into blocks of `block` consecutive
rows, dealt round-robin to `world_size * num_workers` shards; worker `w` of rank `r` is shard
`w * world_size + r` (ranks first, then workers — the order PyTorch's own sharding uses). A
DataLoader takes batches from its workers in turn, so when `block` is its `batch_size`, each batch
is one block and a rank's batches arrive in the order of its blocks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mediatable.errors import InvalidArgument


@dataclasses.dataclass(frozen=True)
class Split:
    """Which part of the rows one reader takes: rank `rank` of `world_size`, worker `worker` of `num_workers`.

    Examples:
        >>> Split(rank=1, world_size=2, worker=1, num_workers=3).shard
        3
    """

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise InvalidArgument(
                f"rank must be in 0..world_size-1, got rank={self.rank}, world_size={self.world_size}"
            )
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            raise InvalidArgument(f"worker {self.worker} is not one of {self.num_workers} workers")

    @property
    def shard(self) -> int:
        """This reader's shard number."""
        return self.worker * self.world_size + self.rank

    @property
    def shards(self) -> int:
        """The number of shards (readers) in all."""
        return self.world_size * self.num_workers


def shard_rows(order: np.ndarray, split: Split, block: int) -> np.ndarray:
    """The rows of `order` that `split` reads, in order: its blocks of `block` consecutive rows.

    Examples:
        >>> rows = np.arange(10)
        >>> [shard_rows(rows, Split(worker=w, num_workers=2), 2).tolist() for w in (0, 1)]
        [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7]]
        >>> [shard_rows(rows, Split(rank=r, world_size=2), 3).tolist() for r in (0, 1)]
        [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9]]
    """
    blocks = np.arange(split.shard, -(-len(order) // block), split.shards)
    index = (blocks[:, None] * block + np.arange(block)[None, :]).ravel()
    return order[index[index < len(order)]]


def rank_size(total: int, rank: int, world_size: int, block: int) -> int:
    """How many of `total` rows rank `rank` reads (all its workers together).

    Examples:
        >>> [rank_size(10, r, 2, 3) for r in (0, 1)]
        [6, 4]
    """
    full, rest = divmod(total, block)
    mine = len(range(rank, full, world_size)) * block
    return mine + (rest if full % world_size == rank else 0)


def epoch_order(rowids: np.ndarray, seed: int | None, epoch: tuple[int, ...]) -> np.ndarray:
    """The rows in query order (`seed` None), or permuted by `seed` and the epoch's key.

    Every reader of one epoch computes the same permutation from the same key.

    Examples:
        >>> epoch_order(np.arange(5), None, (0,)).tolist()
        [0, 1, 2, 3, 4]
        >>> sorted(epoch_order(np.arange(5), 7, (1,)).tolist())
        [0, 1, 2, 3, 4]
        >>> (epoch_order(np.arange(50), 7, (1,)) == epoch_order(np.arange(50), 7, (1,))).all()
        np.True_
    """
    if seed is None:
        return rowids
    return np.random.default_rng([seed % 2**64, *(k % 2**64 for k in epoch)]).permutation(rowids)
