"""Kernel locks of the file cache: the kernel drops them when their holder dies, even by SIGKILL.

Three kinds, each keyed by a hex digest:

- *entry locks* (``locks/entries.lock``): exclusive, one per URL being downloaded, held from before
  the transfer until its index row is committed; waiters sleep in the kernel;
- *pins* (``locks/pins.lock``): shared, one per URL a live lease holds; an evictor takes the same
  key exclusively (never waiting) before it deletes an entry, so a pinned file is never deleted,
  and a pin is visible to every process the moment it is taken;
- *owners* (``locks/owners.lock``): exclusive, one per open cache object for its whole life; what
  an owner left behind (reserved space, temp files, lease folders) is someone else's to remove
  once its lock is free. This works across containers sharing the folder and under pid reuse,
  where asking whether a pid is alive does not.

On Linux the locks are open-file-description locks on bytes of a few files (at an offset taken from
the key): like flock, a lock belongs to one open() and dies with the process; unlike a lock file
per key, it costs no file creation (~100 us on ext4). Entry locks share one file (few are held at
once); pins and owners are spread over ``SHARDS`` files by the key's first byte
(``locks/pins.3f.lock``): the kernel keeps one list of a file's locks and checks a new lock against
all of them, so with every pin in one file, pinning 20,000 files cost 400 us each (quadratic);
sharded, 20,000 pins cost a few microseconds each. Elsewhere, flock on a file per key
(``locks/<kind>-<key>.lock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import sys
import threading
from pathlib import Path
from typing import cast

from mediatable.io.transfer import wait_in_thread

__all__ = ["ENTRY_LOCKS", "EntryLocks", "LockSet", "is_held"]

# Byte-range locks owned by an open file description (Linux).
_OFD_LOCKS = sys.platform == "linux" and hasattr(fcntl, "F_OFD_SETLKW")
ENTRY_LOCKS = "entries.lock"
# Lock files per kind of LockSet, by the key's first byte (opened as keys need them).
SHARDS = 256


class EntryLocks:
    """The entry locks of one cache folder; a held lock is a file descriptor, keyed by the URL's sha256 digest."""

    def __init__(self, directory: Path) -> None:
        self._folder = directory / "locks"
        self._shared = f"{directory}/locks/{ENTRY_LOCKS}"

    def acquire(self, digest: str) -> int:
        """Block until this process holds the lock of one entry; returns the lock's descriptor."""
        if _OFD_LOCKS:
            return cast(int, self._ofd_lock(digest, wait=True))  # waiting never gives None
        path = self._path(digest)
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                return fd
            os.close(fd)  # the holder unlinked it while we waited: lock the new file instead

    async def acquire_async(self, digest: str) -> int:
        """:meth:`acquire` without blocking the event loop while another process downloads.

        The wait runs on a thread of its own (:func:`~mediatable.io.transfer.wait_in_thread`): in a
        bounded pool, waits for locks other processes hold could take every thread while the work
        that ends them waits for one.
        """
        fd = self.try_acquire(digest)
        if fd is not None:
            return fd
        waiting = wait_in_thread(lambda: self.acquire(digest))
        try:
            return await asyncio.wrap_future(waiting)
        except asyncio.CancelledError:
            # The thread still gets the lock eventually: release it then.
            waiting.add_done_callback(
                lambda done: done.cancelled() or done.exception() or self.release(done.result(), digest)
            )
            raise

    def try_acquire(self, digest: str) -> int | None:
        """The lock of one entry if nobody holds it (no download of it is running), else None."""
        if _OFD_LOCKS:
            return self._ofd_lock(digest, wait=False)
        path = self._path(digest)
        fd = _try_flock(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if fd is not None and not _same_file(fd, path):
            os.close(fd)
            return None
        return fd

    def release(self, fd: int, digest: str) -> None:
        """Release a lock from :meth:`acquire` or :meth:`try_acquire`."""
        if _OFD_LOCKS:
            os.close(fd)  # closing the descriptor releases its lock
            return
        # Unlink while still holding the lock, so that a waiter that wakes on this file sees it is
        # gone and locks a fresh one; the folder never fills up with lock files.
        path = self._path(digest)
        with contextlib.suppress(OSError):
            if _same_file(fd, path):
                os.unlink(path)
        os.close(fd)

    def _ofd_lock(self, digest: str, wait: bool) -> int | None:
        """Lock this entry's byte of the shared lock file; without `wait`, None when someone holds it."""
        fd = os.open(self._shared, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, _lock_range(fcntl.F_WRLCK, digest))
        except OSError:
            os.close(fd)
            if wait:
                raise
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _path(self, digest: str) -> Path:
        return self._folder / f"{digest}.lock"


class LockSet:
    """Locks on many keys of one kind, held through one handle; taking one never waits unless asked.

    ``LockSet(folder, "pins")`` locks bytes of ``folder/pins.<shard>.lock`` (Linux) or files
    ``folder/pins-<key>.lock``. Shared locks of different sets coexist; an exclusive one excludes
    every other set, in this process too. Taking a lock never waits. Thread-safe.
    """

    def __init__(self, folder: Path, kind: str) -> None:
        self._folder = folder
        self._kind = kind
        self._lock = threading.Lock()
        self._shards: dict[int, int] | None = {} if _OFD_LOCKS else None  # shard -> descriptor, opened on use
        self._files: dict[str, int] = {}  # flock fallback: key -> descriptor

    def _shard_fd(self, key: str, create: bool) -> int | None:
        """The descriptor of the file holding ``key``'s lock (with the set's lock held); None if none is open."""
        assert self._shards is not None
        shard = _shard(key)
        fd = self._shards.get(shard)
        if fd is None and create:
            fd = self._shards[shard] = os.open(
                _shard_path(self._folder, self._kind, key), os.O_CREAT | os.O_RDWR, 0o600
            )
        return fd

    def add(self, key: str, shared: bool) -> bool:
        """Lock ``key``; False when another set holds a conflicting lock (never waits)."""
        kind = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
        with self._lock:
            if self._shards is not None:
                try:
                    fcntl.fcntl(cast(int, self._shard_fd(key, create=True)), fcntl.F_OFD_SETLK, _lock_range(kind, key))
                except BlockingIOError:
                    return False
                except OSError as exc:
                    if exc.errno in (11, 13):  # EAGAIN/EACCES: held by someone else
                        return False
                    raise
                return True
            if key in self._files:
                return True
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        fd = _try_flock(self._folder / f"{self._kind}-{key}.lock", flags)
        if fd is None:
            return False
        with self._lock:
            self._files[key] = fd
        return True

    def remove(self, key: str) -> None:
        """Drop the lock on ``key`` (a key not held is ignored)."""
        with self._lock:
            if self._shards is not None:
                fd = self._shard_fd(key, create=False)
                if fd is not None:
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _lock_range(fcntl.F_UNLCK, key))
                return
            fd = self._files.pop(key, None)
        if fd is not None:
            os.close(fd)

    def remove_many(self, keys: list[str]) -> None:
        """Drop the locks on ``keys``, lowest offset first.

        The kernel keeps a file's byte-range locks in one list, sorted by offset per owner, and an
        unlock walks it from the owner's first lock: in ascending order each unlock finds its lock
        first (thousands of pins go in milliseconds, not the second that random order takes).
        """
        for key in sorted(keys, key=_offset):
            self.remove(key)

    def remove_all(self) -> None:
        """Drop every lock of the set and keep its files open: one unlock per file, not one per key."""
        with self._lock:
            if self._shards is not None:
                for fd in self._shards.values():
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _WHOLE_FILE_UNLOCK)
                return
            fds, self._files = list(self._files.values()), {}
        for fd in fds:
            os.close(fd)

    def close(self) -> None:
        """Drop every lock of the set."""
        with self._lock:
            fds = [*(self._shards or {}).values(), *self._files.values()]
            self._shards = {} if self._shards is not None else None
            self._files = {}
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> LockSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_held(folder: Path, kind: str, key: str) -> bool:
    """Whether any live lock set holds ``key`` of ``kind`` (shared or exclusive).

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> owner = LockSet(folder, "owners")
        >>> owner.add("0123abcd", shared=False)
        True
        >>> is_held(folder, "owners", "0123abcd")
        True
        >>> owner.close()
        >>> is_held(folder, "owners", "0123abcd")
        False
    """
    if _OFD_LOCKS:
        try:
            fd = os.open(_shard_path(folder, kind, key), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _lock_range(fcntl.F_WRLCK, key))
        finally:
            os.close(fd)
        return struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK
    fd = _try_flock(folder / f"{kind}-{key}.lock", fcntl.LOCK_EX | fcntl.LOCK_NB, create=False)
    if fd is None:
        return (folder / f"{kind}-{key}.lock").exists()
    os.close(fd)
    return False


def _try_flock(path: Path, flags: int, create: bool = True) -> int | None:
    """A flock on ``path`` (descriptor), or None if it is held or cannot be opened."""
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, flags)
    except OSError:
        os.close(fd)
        return None
    return fd


_WHOLE_FILE_UNLOCK = struct.pack("hhqqi4x", fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0)  # length 0: to the end and beyond


def _lock_range(kind: int, key: str) -> bytes:
    """A `struct flock` for the one byte of a key (l_pid 0, as OFD locks need)."""
    return struct.pack("hhqqi4x", kind, os.SEEK_SET, _offset(key), 1, 0)


def _shard(key: str) -> int:
    return int(key[:2], 16) % SHARDS


def _shard_path(folder: Path, kind: str, key: str) -> Path:
    return folder / f"{kind}.{_shard(key):02x}.lock"


def _offset(key: str) -> int:
    """The byte of the lock file that stands for ``key`` (a hex digest)."""
    return int(key[:15], 16)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False
