"""Crash leftovers and damage: what dead processes left behind, and entries whose file no longer matches.

A process that dies (even by SIGKILL) may leave reserved space and an owner row in the index, a
temp file in ``tmp/`` and a lease folder in ``leases/``; a crash between rename and index write
leaves a file without an entry. Each of these names its owner, and an owner is alive exactly as
long as it holds its owner lock (:mod:`~mediatable.io.cache.locks`): nothing alive is touched.
A file changed behind the cache's back (truncated, rewritten) no longer matches its entry's size
or content hash: :func:`reconcile` and :func:`verify` drop such entries, so the next access
downloads the object again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import sqlite3
from pathlib import Path

from mediatable.io.cache.index import CacheIndex
from mediatable.io.cache.locks import EntryLocks, LockSet, is_held

__all__ = ["OWNER_LOCKS", "PIN_LOCKS", "Verified", "forget_dead", "reconcile", "remove_leftovers", "verify"]

OWNER_LOCKS = "owners"
PIN_LOCKS = "pins"
# tmp/<digest><ext>.<owner>-<n>.part and leases/<owner>-<token>/
_TEMP_OWNER = re.compile(r"\.([0-9a-f]{16})-[0-9a-f]+\.part$")
_LEASE_OWNER = re.compile(r"^([0-9a-f]{16})-[0-9a-f]+$")


@dataclasses.dataclass(frozen=True)
class Verified:
    """What :meth:`~mediatable.io.cache.FileCache.verify` found.

    Attributes:
        entries: entries checked.
        hashed: of those, entries whose content hash was compared (recorded at download).
        damaged: entries whose file was missing, of the wrong size or with other content; they
            were removed from the cache (the next access downloads them again).
        orphans: files no entry referenced (crash leftovers), removed.
    """

    entries: int
    hashed: int
    damaged: list[str]
    orphans: int = 0

    @property
    def clean(self) -> bool:
        return not self.damaged

    def __str__(self) -> str:
        text = f"checked {self.entries:,} entries ({self.hashed:,} by content hash): "
        text += "all intact" if self.clean else f"{len(self.damaged):,} damaged, removed"
        return text + (f"; removed {self.orphans:,} leftover files" if self.orphans else "")


def owner_alive(locks: Path, owner: str) -> bool:
    """Whether the cache object ``owner`` still runs (it holds its owner lock)."""
    return is_held(locks, OWNER_LOCKS, owner)


def forget_dead(db: sqlite3.Connection, locks: Path, me: str) -> bool:
    """Delete the reservations and owner rows of dead cache objects (in an index write transaction).

    Returns whether there were any.
    """
    owners = {owner for (owner,) in db.execute("SELECT owner FROM owners UNION SELECT owner FROM reservations")}
    dead = [(owner,) for owner in owners if owner != me and not owner_alive(locks, owner)]
    if dead:
        db.executemany("DELETE FROM reservations WHERE owner = ?", dead)
        db.executemany("DELETE FROM owners WHERE owner = ?", dead)
    return bool(dead)


def remove_leftovers(directory: Path) -> None:
    """Remove the temp files and lease folders of dead cache objects (raises OSError)."""
    locks = directory / "locks"
    for temp in (directory / "tmp").iterdir():
        match = _TEMP_OWNER.search(temp.name)
        if match is None or not owner_alive(locks, match.group(1)):
            temp.unlink(missing_ok=True)
    for folder in (directory / "leases").iterdir():
        match = _LEASE_OWNER.match(folder.name)
        if match is None or not owner_alive(locks, match.group(1)):
            shutil.rmtree(folder, ignore_errors=True)


def reconcile(directory: Path, index: CacheIndex, entry_locks: EntryLocks) -> int:
    """Drop entries whose file is missing or has the wrong size, and delete files no entry references.

    A file is deleted only while holding its entry lock (no download of the URL is between rename
    and index row) and its pin key exclusively (nobody reads it), and after checking again that
    no entry references it. Returns the number of files removed.
    """
    rows = index.read("SELECT url, path, size FROM entries")
    known = set()
    broken = []
    for url, path, size in rows:
        known.add(path)
        try:
            if os.stat(directory / path).st_size != size:
                broken.append((url, path))
        except FileNotFoundError:
            broken.append((url, path))
    if broken:
        index.write(lambda db: db.executemany("DELETE FROM entries WHERE url = ? AND path = ?", broken))
        known.difference_update(path for _, path in broken)
    removed = 0
    for folder in directory.iterdir():
        if not (folder.is_dir() and len(folder.name) == 2):
            continue
        for file in folder.iterdir():
            rel = f"{folder.name}/{file.name}"
            if rel not in known and _remove_unreferenced(directory, index, entry_locks, rel):
                removed += 1
    return removed


def verify(directory: Path, index: CacheIndex, entry_locks: EntryLocks) -> Verified:
    """Check every entry's file: its size always, its content against the sha256 recorded at download."""
    rows = index.read("SELECT url, path, size, sha256 FROM entries")
    damaged = []
    hashed = 0
    for url, path, size, recorded in rows:
        try:
            intact = os.stat(directory / path).st_size == size
            if intact and recorded:
                hashed += 1
                intact = _sha256(directory / path) == recorded
        except FileNotFoundError:
            intact = False
        if not intact:
            damaged.append((url, path))
    if damaged:
        index.write(lambda db: db.executemany("DELETE FROM entries WHERE url = ? AND path = ?", damaged))
    orphans = reconcile(directory, index, entry_locks)
    return Verified(entries=len(rows), hashed=hashed, damaged=[url for url, _ in damaged], orphans=orphans)


def _remove_unreferenced(directory: Path, index: CacheIndex, entry_locks: EntryLocks, rel: str) -> bool:
    digest = rel[3:67]
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        with contextlib.suppress(OSError):
            os.unlink(directory / rel)  # not a name the cache gives: nobody can be using it
            return True
        return False
    lock = entry_locks.try_acquire(digest)
    if lock is None:
        return False  # a download of this URL is running: the file may be its, awaiting its row
    try:
        with LockSet(directory / "locks", PIN_LOCKS) as evicting:
            if not evicting.add(digest, shared=False):
                return False  # a lease still reads it (an older version of the entry)
            if index.read("SELECT 1 FROM entries WHERE path = ?", (rel,)):
                return False  # published since we looked
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / rel)
            return True
    finally:
        entry_locks.release(lock, digest)


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
