"""What a write operation reports: counts of rows, computed values and errors."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from tqdm import tqdm

from mediatable.config import Settings
from mediatable.io.cache.info import human_size


@dataclasses.dataclass
class UpdateStatus:
    """The outcome of an insert, update, delete or computed-column operation.

    Attributes:
        num_rows: rows inserted, updated or deleted.
        num_computed_values: cells written (inserted values plus computed values).
        num_excs: cells that hold an error instead of a value.
        cols_with_excs: `table.column` names that got errors.
        operation: 'inserted', 'updated' or 'deleted'.
        num_updated: for an insert with `on_conflict='update'`, stored rows it updated.
        errors: messages of rows that were refused (e.g. unreachable media with `media_validation='on_write'`).

    Examples:
        >>> UpdateStatus(num_rows=3, num_computed_values=6, operation="inserted")
        3 rows inserted, 6 values computed.
    """

    num_rows: int = 0
    num_computed_values: int = 0
    num_excs: int = 0
    cols_with_excs: list[str] = dataclasses.field(default_factory=list)
    operation: str = "updated"
    num_updated: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)

    def __repr__(self) -> str:
        text = f"{plural(self.num_rows, 'row')} {self.operation}, "
        if self.num_updated:
            text += f"{plural(self.num_updated, 'row')} updated, "
        text += f"{plural(self.num_computed_values, 'value')} computed"
        if self.num_excs:
            text += f", {plural(self.num_excs, 'error')} in {', '.join(self.cols_with_excs)}"
        return text + "."

    __str__ = __repr__

    def __add__(self, other: UpdateStatus) -> UpdateStatus:
        return UpdateStatus(
            num_rows=max(self.num_rows, other.num_rows),
            num_computed_values=self.num_computed_values + other.num_computed_values,
            num_excs=self.num_excs + other.num_excs,
            cols_with_excs=sorted(set(self.cols_with_excs) | set(other.cols_with_excs)),
            operation=self.operation,
            num_updated=self.num_updated + other.num_updated,
            errors=self.errors + other.errors,
        )


def plural(n: int, word: str) -> str:
    """`n` and the word, in the plural unless `n` is 1.

    Examples:
        >>> plural(1, "row"), plural(0, "error"), plural(3, "value")
        ('1 row', '0 errors', '3 values')
    """
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def progress_enabled(settings: Settings) -> bool:
    """Progress bars show when `settings.progress` is True, or None and stderr is a terminal."""
    if settings.progress is not None:
        return settings.progress
    return sys.stderr.isatty()


def progress_bar(settings: Settings, desc: str, unit: str = "rows", total: int | None = None) -> Any:
    """A tqdm bar on stderr (disabled per :func:`progress_enabled`)."""
    return tqdm(
        desc=desc,
        unit=f" {unit}",
        total=total,
        file=sys.stderr,
        disable=not progress_enabled(settings),
        leave=True,
        dynamic_ncols=True,
        bar_format="{desc}: {n_fmt} " + unit + " [{elapsed}, {rate_fmt}]" if total is None else None,
    )


class TransferBar:
    """A tqdm bar of objects, with the bytes so far after it: what the transfer stage reports into.

    Examples:
        >>> bar = TransferBar("Fetching media", total=2, show=False)
        >>> bar.advance(1, 2048)
        >>> bar.close()
    """

    def __init__(self, description: str, total: int | None, show: bool) -> None:
        self._bytes = 0
        self._bar = tqdm(
            total=total,
            desc=description,
            unit=" objects",
            file=sys.stderr,
            disable=not show,
            mininterval=0.2,
            dynamic_ncols=True,
        )

    def advance(self, objects: int, nbytes: int) -> None:
        if self._bar.disable:
            return
        self._bytes += nbytes
        self._bar.set_postfix_str(human_size(self._bytes), refresh=False)
        self._bar.update(objects)

    def close(self) -> None:
        self._bar.close()


class TransferBars:
    """Makes :class:`TransferBar` objects for one session's settings (what the file cache and uploads call).

    Examples:
        >>> from mediatable.config import Settings
        >>> bars = TransferBars(Settings(progress=False))
        >>> bars("Fetching media", 10, None).close()
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __call__(self, description: str, total: int | None, show: bool | None) -> TransferBar:
        return TransferBar(description, total, progress_enabled(self._settings) if show is None else show)
