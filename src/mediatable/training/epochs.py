"""One summary of skipped rows per epoch, whichever DataLoader workers read the rows.

Each worker of an epoch counts the rows it left out (`on_error='skip'`); a DataLoader gives the
training loop no hook at the end of an epoch, and the dataset object of the training process is
never iterated when workers read. So the workers gather their counts themselves: each writes its
tally to a file (temp file + rename) in a private folder of the mediatable home, then, under a
file lock, looks at how many of the epoch's tallies exist; the worker that finds all of them —
the last to finish — removes them and logs one summary for the epoch. Tallies of an epoch that
was abandoned (the loop broke off) are left behind and removed a day later.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from pathlib import Path

from mediatable.training.samples import SkippedRows

STALE_SECONDS = 24 * 3600
"""Tallies older than this belong to abandoned epochs and are removed."""


def epoch_total(folder: Path, epoch: str, worker: int, workers: int, skipped: SkippedRows) -> SkippedRows | None:
    """Record one worker's tally of epoch `epoch`; the whole epoch's once all `workers` recorded theirs, else None.

    Exactly one of the workers (the last) gets the total, however they interleave.

    Examples:
        >>> import tempfile
        >>> folder, a, b = Path(tempfile.mkdtemp()), SkippedRows("t"), SkippedRows("t")
        >>> a.seen(3); b.seen(2); b.add(7, "'image'", "MediaNotFound", "gone")
        >>> epoch_total(folder, "e1", 0, 2, a) is None
        True
        >>> epoch_total(folder, "e1", 1, 2, b).summary()
        "skipped 1 of 5 rows of 't' (1 not found); row 7: 'image': MediaNotFound: gone"
        >>> sorted(p.name for p in folder.iterdir())
        []
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    mine = folder / f"{epoch}.{worker}.json"
    temp = folder / f".{epoch}.{worker}.{uuid.uuid4().hex[:8]}.tmp"
    temp.write_text(json.dumps(skipped.to_dict()))
    os.replace(temp, mine)
    lock_path = folder / f"{epoch}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tallies = sorted(folder.glob(f"{epoch}.*.json"))
        if len(tallies) < workers:
            return None
        total = SkippedRows(skipped.table)
        for path in tallies:
            total.merge(SkippedRows.from_dict(json.loads(path.read_text())))
            path.unlink()
        lock_path.unlink()  # a worker still waiting on it finds no tallies left
    _remove_stale(folder)
    return total


def _remove_stale(folder: Path) -> None:
    cutoff = time.time() - STALE_SECONDS
    for path in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
