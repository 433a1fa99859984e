"""The SQLite index of one file cache folder: schema, a connection per thread, one group-committing writer.

The index (``<cache_dir>/index.db``, WAL mode, created ``0600``: it holds URLs, which may carry
signatures) is shared by every process using the folder. This module knows its tables and how to
read and write them without the writers of 32 downloads queueing on one connection; what the rows
mean is the business of the modules around it, apart from the eviction query
(:func:`pick_victims`), which also takes the pins' locks.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from mediatable.config import create_private_file
from mediatable.errors import CacheError
from mediatable.io.cache.locks import LockSet

__all__ = ["FLUSH_SECONDS", "CacheIndex", "Row", "Victim", "delete_rows", "pick_victims"]

log = logging.getLogger("mediatable.io.cache")

_SCHEMA_VERSION = 3
_TABLES = """
CREATE TABLE IF NOT EXISTS entries (
    url TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT,
    last_modified REAL,
    created REAL NOT NULL,
    last_access REAL NOT NULL,
    sha256 TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_lru ON entries (last_access);
CREATE INDEX IF NOT EXISTS entries_path ON entries (path);
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_insert AFTER INSERT ON entries BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_delete AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_resize AFTER UPDATE OF size ON entries BEGIN
    UPDATE totals SET bytes = bytes - OLD.size + NEW.size WHERE id = 0;
END;
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    owner TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
"""
# Version 2 kept pins and owners' liveness in tables (by pid); its entries carry over.
_FROM_V2 = """
ALTER TABLE entries ADD COLUMN sha256 TEXT;
DROP TABLE IF EXISTS pins;
DROP TABLE IF EXISTS owners;
DROP TABLE IF EXISTS reservations;
"""
_DROP_ALL = """
DROP TABLE IF EXISTS entries; DROP TABLE IF EXISTS totals; DROP TABLE IF EXISTS pins;
DROP TABLE IF EXISTS owners; DROP TABLE IF EXISTS reservations;
"""

# Hot-path bookkeeping waits at most this long (seconds) for a transaction to carry it.
FLUSH_SECONDS = 0.25

# An evicted entry: (url, path relative to the cache folder, size).
Victim = tuple[str, str, int]
# An entry's row as lookups give it: (url, path, size, etag, last_modified, created).
Row = tuple[str, str, int, str | None, float | None, float]
_Op = Callable[[sqlite3.Connection], Any]


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (the index closes the readers still alive)."""


class CacheIndex:
    """The SQLite index of one cache folder: per-thread readers, one writer thread, group commit.

    Reads run on a connection per thread: in WAL mode readers never wait for the writer. Writes are
    functions handed to one writer thread, which runs everything queued in one transaction. With 32
    downloads finishing together one commit serves them all; a lock around one shared connection
    instead made each thread queue and then wait for the GIL after every statement (~15 ms per
    download in the cold benchmark). Functions run on the writer's connection inside its
    transaction, must not call :meth:`write`, and see each other's changes in queue order. Each runs
    inside a SAVEPOINT: one that raises leaves no partial writes and fails alone. Whatever goes
    wrong, the writer thread keeps serving (a failed commit fails that batch's futures).
    """

    def __init__(self, path: Path, background: Callable[[sqlite3.Connection], bool]) -> None:
        self._path = path
        # Applied in every transaction, and when idle with work pending; True: run me again soon.
        self._background = background
        create_private_file(path)
        self._writer = self._open()
        try:
            self._migrate()
        except BaseException:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            self._writer.close()
            raise
        self._local = threading.local()
        self._readers: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._queue: list[tuple[_Op, Future[Any]]] = []
        self._cond = threading.Condition()
        self._pending_background = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="mt-cache-index", daemon=True)
        self._thread.start()

    def _migrate(self) -> None:
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != _SCHEMA_VERSION:
            columns = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
            if version == 2 and "sha256" not in columns:
                _run_script(db, _FROM_V2)
            elif version not in (0, _SCHEMA_VERSION):
                _run_script(db, _DROP_ALL)  # unknown layout: start over (files are swept as orphans)
            _run_script(db, _TABLES)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        db.execute("COMMIT")

    def _open(self) -> _Connection:
        db = sqlite3.connect(
            self._path, timeout=60.0, isolation_level=None, check_same_thread=False, factory=_Connection
        )
        db.execute("PRAGMA busy_timeout = 60000")
        db.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a power cut may lose the last transactions but never corrupts the
        # index; a lost row only means a file is downloaded again (or removed by prune).
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def read(self, sql: str, params: Any = ()) -> list[Any]:
        """Rows of one query, on this thread's own connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._open()
            self._readers.add(db)
        return db.execute(sql, params).fetchall()

    def submit(self, op: _Op) -> Future[Any]:
        """Queue ``op`` for the writer; the future resolves once its transaction committed."""
        future: Future[Any] = Future()
        with self._cond:
            if self._closing:
                raise CacheError("the file cache is closed")
            self._queue.append((op, future))
            self._cond.notify()
        return future

    def write(self, op: _Op) -> Any:
        """Run ``op`` in the writer's next transaction and return its result once committed."""
        return self.submit(op).result()

    def kick(self) -> None:
        """Ask the writer to run the background function soon (within `FLUSH_SECONDS`)."""
        if not self._pending_background:
            with self._cond:
                self._pending_background = True
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        for db in list(self._readers):
            db.close()
        self._writer.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    if self._pending_background:
                        # Let hot-path updates gather; a write arriving meanwhile carries them along.
                        if not self._cond.wait(FLUSH_SECONDS):
                            break
                    else:
                        self._cond.wait()
                batch, self._queue = self._queue, []
                self._pending_background = False
                closing = self._closing
            try:
                again = self._commit(batch)
            except BaseException as exc:  # the writer must outlive any failure, or every later write hangs
                again = False
                log.warning("file cache index writer: %r", exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(CacheError(f"cannot update the file cache index {self._path}: {exc!r}"))
            if again:
                with self._cond:
                    self._pending_background = True
            if closing:
                with self._cond:
                    if not self._queue:
                        return

    def _commit(self, batch: list[tuple[_Op, Future[Any]]]) -> bool:
        db = self._writer
        again = False
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for op, future in batch:
                db.execute("SAVEPOINT op")
                try:
                    result = op(db)
                except Exception as exc:  # one bad operation must not fail the others, nor leave half its writes
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    outcomes.append((future, None, exc))
                else:
                    db.execute("RELEASE op")
                    outcomes.append((future, result, None))
            db.execute("SAVEPOINT background")
            try:
                again = self._background(db)  # after the operations: their bookkeeping commits with them
            except Exception as exc:
                db.execute("ROLLBACK TO background")
                log.warning("file cache bookkeeping failed: %r", exc)
            db.execute("RELEASE background")
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            error = CacheError(f"cannot update the file cache index {self._path}: {exc}")
            error.__cause__ = exc
            for _, future in batch:
                future.set_exception(error)
            if not batch:
                log.warning("%s", error)
            if not isinstance(exc, Exception):
                raise
            return False
        for future, result, failure in outcomes:
            if failure is None:
                future.set_result(result)
            else:
                future.set_exception(failure)
        return again


def pick_victims(
    db: sqlite3.Connection, need: int, pins: Mapping[str, int], evicting: LockSet, partial: bool = False
) -> list[Victim]:
    """Unpinned entries, least recently used first, totalling at least ``need`` bytes.

    An entry is a victim once ``evicting`` holds its pin key exclusively (nobody has it pinned, and
    nobody can pin it until the set closes: the caller closes it after the rows are deleted and the
    files unlinked). ``pins``: this process's pin counts, to skip its own pins without a system
    call. Returns [] (and takes no lock) when the unpinned entries cannot free that much, unless
    ``partial``. Runs in an index write transaction.
    """
    victims: list[Victim] = []
    freed = 0
    cursor: tuple[float, str] = (-math.inf, "")
    while freed < need:
        rows = db.execute(
            "SELECT url, path, size, last_access FROM entries WHERE (last_access, url) > (?, ?)"
            " ORDER BY last_access, url LIMIT 256",
            cursor,
        ).fetchall()
        if not rows:
            break
        for url, path, size, last_access in rows:
            cursor = (last_access, url)
            if pins.get(url, 0) > 0 or not evicting.add(_pin_key(path), shared=False):
                continue
            victims.append((url, path, size))
            freed += size
            if freed >= need:
                break
    if freed < need and not partial:
        for _, path, _ in victims:
            evicting.remove(_pin_key(path))
        return []
    return victims


def delete_rows(db: sqlite3.Connection, victims: list[Victim]) -> None:
    """Delete the index rows of evicted entries (in an index write transaction)."""
    db.executemany("DELETE FROM entries WHERE url = ? AND path = ?", [(url, path) for url, path, _ in victims])


def _pin_key(path: str) -> str:
    """The pin key of an entry from its path (``ab/<sha256 of the url>...``)."""
    return path[3:67]


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one inside the caller's transaction (`executescript` would commit it)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                db.execute(pending)
            pending = ""
