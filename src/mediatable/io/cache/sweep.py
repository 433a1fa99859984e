"""Crash leftovers of the file cache: what dead processes left in the index and in the folder.

A process that dies (even by SIGKILL) may leave reserved space, pins and an owner row in the index,
a temp file in ``tmp/``, a lock file in ``locks/`` (not on Linux) and a lease folder in ``leases/``;
a crash between rename and index write leaves a file without an entry. The functions here find
and remove them; a live writer always holds a lock on what it owns, so nothing alive is touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path

from mediatable.io.cache.index import CacheIndex
from mediatable.io.cache.locks import SHARED_LOCK, EntryLocks, try_flock

__all__ = ["alive", "drop_dead_owners", "forget_dead", "reconcile", "remove_leftovers"]

# A temp file whose writer's pid is alive but whose lock is free is an orphan once this old
# (the pid was reused); younger ones may belong to a writer between create and lock.
_ORPHAN_AGE = 60.0


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_dead_owners(db: sqlite3.Connection, my_pid: int) -> None:
    """Delete the pins of cache objects whose process died (in an index write transaction)."""
    dead = [
        (owner,)
        for owner, pid in db.execute("SELECT owner, pid FROM owners").fetchall()
        if pid != my_pid and not alive(pid)
    ]
    if dead:
        db.executemany("DELETE FROM pins WHERE owner = ?", dead)
        db.executemany("DELETE FROM owners WHERE owner = ?", dead)


def forget_dead(index: CacheIndex, my_pid: int) -> bool:
    """Drop the reserved space and pins of dead processes; True if there were any."""
    pids = {pid for (pid,) in index.read("SELECT pid FROM reservations UNION SELECT pid FROM pins")}
    dead = [(pid,) for pid in pids if pid != my_pid and not alive(pid)]

    def forget(db: sqlite3.Connection) -> None:
        drop_dead_owners(db, my_pid)
        db.executemany("DELETE FROM reservations WHERE pid = ?", dead)
        db.executemany("DELETE FROM pins WHERE pid = ?", dead)

    index.write(forget)
    return bool(dead)


def remove_leftovers(directory: Path, locks: EntryLocks, my_pid: int) -> None:
    """Remove the temp files, lock files and lease folders of dead processes (raises OSError)."""
    for temp in (directory / "tmp").iterdir():
        if _orphaned_temp(temp, my_pid):
            temp.unlink(missing_ok=True)
    for lock_file in (directory / "locks").iterdir():
        if lock_file.name == SHARED_LOCK:
            continue
        held = locks.try_acquire(lock_file.stem)
        if held is not None:
            locks.release(held, lock_file.stem)  # unlinks the stale lock file
    for folder in (directory / "leases").iterdir():
        lock = try_flock(folder / ".lock")
        if lock is not None:
            shutil.rmtree(folder, ignore_errors=True)
            os.close(lock)
        elif not (folder / ".lock").exists() and time.time() - folder.stat().st_mtime > _ORPHAN_AGE:
            shutil.rmtree(folder, ignore_errors=True)  # its lease died before locking it


def reconcile(directory: Path, index: CacheIndex) -> int:
    """Delete entries without files and files without entries; return the number of files removed."""
    rows = index.read("SELECT url, path FROM entries")
    known = {path for _, path in rows}
    missing = [(url,) for url, path in rows if not os.path.exists(directory / path)]
    if missing:
        index.write(lambda db: db.executemany("DELETE FROM entries WHERE url = ?", missing))
    removed = 0
    for folder in directory.iterdir():
        if not (folder.is_dir() and len(folder.name) == 2):
            continue
        for file in folder.iterdir():
            if f"{folder.name}/{file.name}" in known:
                continue
            with contextlib.suppress(OSError):
                file.unlink()
                removed += 1
    return removed


def _orphaned_temp(path: Path, my_pid: int) -> bool:
    """Whether a temp file belongs to a download that died (`<name>.<pid>-<token>.part`)."""
    match = re.search(r"\.(\d+)-[0-9a-f]+\.part$", path.name)
    if match is None:
        return True
    pid = int(match.group(1))
    if pid == my_pid:
        return False
    if not alive(pid):
        return True
    # The pid is alive, but it may be a new process that reused the number: the real writer
    # holds an exclusive lock on its temp file for as long as it writes (and takes it right
    # after creating the file, hence the age condition).
    lock = try_flock(path)
    if lock is None:
        return False
    os.close(lock)
    try:
        return time.time() - path.stat().st_mtime > _ORPHAN_AGE
    except OSError:
        return False
