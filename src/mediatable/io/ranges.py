"""Seekable remote files: a read-only file object over an object's blocks, fetched on demand.

A :class:`RemoteFile` looks like a local file opened ``'rb'`` (``read``, ``readinto``, ``seek``,
``tell``): PyAV (``av.open(f)``) and Pillow (``PIL.Image.open(f)``) read it directly, and only the
blocks they touch are transferred. Where the blocks come from is a :class:`BlockSource`: the file
cache provides one per object and version (:meth:`Lease.get_ranged
<mediatable.io.cache.Lease.get_ranged>`), which fetches each block once, through the transfer
stage, and keeps it as a cache entry.

Reads are served from a few blocks held in memory (``keep``). Reading three or more blocks in a
row is sequential access: the file then asks its source for the following blocks ahead of time,
a window that doubles up to ``read_ahead`` blocks (:class:`ReadAhead`); a jump elsewhere resets it.

Lifecycle: a RemoteFile is opened by its source's owner and closed by its user (``close()`` or a
``with`` block); it is meant for one thread at a time, like any file object. Closing it drops the
blocks it holds in memory; blocks being fetched ahead finish into the cache.

Examples:
    >>> class Letters:                       # any BlockSource: here, blocks of a bytes object
    ...     size, block_size, name = 10, 4, "letters"
    ...     def read_block(self, index): return b"abcdefghij"[index * 4 : index * 4 + 4]
    ...     def prefetch(self, indices): pass
    >>> f = RemoteFile(Letters())
    >>> f.read(3), f.seek(-2, 2), f.read()
    (b'abc', 8, b'ij')
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

__all__ = ["BlockSource", "ReadAhead", "RemoteFile"]


class BlockSource(Protocol):
    """Where a :class:`RemoteFile` gets its bytes: fixed-size blocks of one version of one object.

    Attributes:
        size: the object's length in bytes.
        block_size: bytes per block; block ``i`` spans ``[i * block_size, min((i + 1) * block_size, size))``.
        name: what the file calls itself (a redacted URL): decoders put it in their messages.
    """

    size: int
    block_size: int
    name: str

    def read_block(self, index: int) -> bytes:
        """The bytes of block ``index`` (blocking until they are here)."""
        ...

    def prefetch(self, indices: Sequence[int]) -> None:
        """Start fetching these blocks without waiting for them (read-ahead)."""
        ...


class ReadAhead:
    """Which blocks to fetch ahead, from the order in which blocks are read.

    A decoder that seeks and then reads a little (an index, one frame) crosses into the next block
    now and then; fetching ahead then would be waste. So the window opens only on the third block
    read in a row, with one block, and doubles with each further one up to ``max_blocks``.

    Examples:
        >>> policy = ReadAhead(max_blocks=4, last_block=100)
        >>> [policy.after(i) for i in (10, 11, 12, 13, 14, 50)]
        [[], [], [13], [14, 15], [16, 17, 18], []]
    """

    def __init__(self, max_blocks: int, last_block: int) -> None:
        self._max = max(max_blocks, 0)
        self._last_block = last_block
        self._previous: int | None = None
        self._run = 0  # blocks read in a row, this one included
        self._requested = -1  # the furthest block asked for ahead

    def after(self, index: int) -> list[int]:
        """Blocks to fetch ahead now that block ``index`` is being read."""
        if index == self._previous:
            return []
        sequential = self._previous is not None and index == self._previous + 1
        self._previous = index
        self._run = self._run + 1 if sequential else 1
        if self._run < 3 or not self._max:
            self._requested = max(self._requested, index) if sequential else index
            return []
        window = min(2 ** (self._run - 3), self._max)
        start = max(index + 1, self._requested + 1)
        stop = min(index + window, self._last_block)
        wanted = list(range(start, stop + 1))
        if wanted:
            self._requested = wanted[-1]
        return wanted


class RemoteFile(io.RawIOBase):
    """A read-only, seekable file over the blocks of one object (see the module docstring).

    Args:
        source: provides the blocks.
        keep: blocks kept in memory (a decoder that alternates between the index and the data
            finds both here).
        read_ahead: the most blocks fetched ahead during sequential reads (0: none).

    Examples:
        >>> class Zeros:
        ...     size, block_size, name = 1000, 100, "zeros"
        ...     def read_block(self, index): return bytes(min(100, 1000 - index * 100))
        ...     def prefetch(self, indices): pass
        >>> with RemoteFile(Zeros()) as f:
        ...     _ = f.seek(990)
        ...     len(f.read(50)), f.tell()
        (10, 1000)
    """

    def __init__(self, source: BlockSource, *, keep: int = 3, read_ahead: int = 4) -> None:
        super().__init__()
        self._source = source
        self._size = int(source.size)
        self._block_size = max(int(source.block_size), 1)
        self._position = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._keep = max(keep, 1)
        self._ahead = ReadAhead(read_ahead, max(self._size - 1, 0) // self._block_size)

    @property
    def name(self) -> str:
        """The object's (redacted) URL."""
        return self._source.name

    @property
    def size(self) -> int:
        """The object's length in bytes."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._check_closed()
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check_closed()
        if whence == os.SEEK_SET:
            target = offset
        elif whence == os.SEEK_CUR:
            target = self._position + offset
        elif whence == os.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if target < 0:
            raise OSError(22, f"negative seek position {target}")
        self._position = target
        return target

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check_closed()
        out = memoryview(buffer).cast("B")
        wanted = min(len(out), max(self._size - self._position, 0))
        done = 0
        while done < wanted:
            index, offset = divmod(self._position, self._block_size)
            block = self._block(index)
            count = min(len(block) - offset, wanted - done)
            if count <= 0:  # the source gave a short block: the object is shorter than announced
                raise OSError(f"{self.name}: block {index} ends early ({len(block)} bytes)")
            out[done : done + count] = block[offset : offset + count]
            done += count
            self._position += count
        return done

    def readall(self) -> bytes:
        chunks = []
        while self._position < self._size:
            index, offset = divmod(self._position, self._block_size)
            block = self._block(index)
            if len(block) <= offset:
                raise OSError(f"{self.name}: block {index} ends early ({len(block)} bytes)")
            chunks.append(block[offset:])
            self._position += len(block) - offset
        return b"".join(chunks)

    def close(self) -> None:
        self._blocks.clear()
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"at {self._position}"
        return f"<RemoteFile {self.name!r} {self._size} bytes, {state}>"

    def _block(self, index: int) -> bytes:
        ahead = self._ahead.after(index)
        if ahead:
            self._source.prefetch(ahead)
        block = self._blocks.get(index)
        if block is not None:
            self._blocks.move_to_end(index)
            return block
        block = self._source.read_block(index)
        self._blocks[index] = block
        while len(self._blocks) > self._keep:
            self._blocks.popitem(last=False)
        return block

    def _check_closed(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
