"""Header reads in one pass: pipeline targets that only read image headers (`t.image.width`, `.mode`, ...).

When every target of a run is a header-only function (`Function.header_only`) of a stored image
column, the pipeline computes its chunks here instead of through the general evaluation (a row
environment per row, the row's shared images, the call router): each row's image is opened once,
every target reads its header, and it is closed before the next row is opened, as a bare loop over
the cache would do. Nothing of a row outlives it, so the garbage collector finds nothing to scan.

Values and errors are those of the general evaluation (:class:`~mediatable.exprs.FunctionCall`):
None for a missing image, the cell's own error for an image cell holding one, the error of a file
that cannot be fetched or read (naming its redacted URL) for that cell alone, and a file deleted
after it was prefetched is fetched again (:meth:`~mediatable.exec.pipeline.MediaAccess.open`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from mediatable import types as ts
from mediatable.exprs import CellError, ColumnRef, Expr, FunctionCall


class Opener(Protocol):
    """The part of :class:`~mediatable.exec.pipeline.MediaAccess` header reads use."""

    def open(self, url: str, col_type: ts.ColumnType, ranged: bool = False, opened: list[Any] | None = None) -> Any: ...


@dataclasses.dataclass(frozen=True)
class HeaderReads:
    """Header-only functions of stored media columns, grouped by column: `(column, type the functions take,
    ranged, ((target index, function), ...))`; `count` targets in all."""

    groups: tuple[tuple[str, ts.ColumnType, bool, tuple[tuple[int, Callable[[Any], Any]], ...]], ...]
    count: int

    def read(self, rows: Sequence[dict[str, Any]], media: Opener) -> list[list[Any]]:
        """Per target, its value in each of `rows` (a value, None or a CellError)."""
        out: list[list[Any]] = [[] for _ in range(self.count)]
        for row in rows:
            for column, col_type, ranged, functions in self.groups:
                value = row.get(column)
                opened: list[Any] = []
                try:
                    image = _open(value, col_type, ranged, media, opened)
                    unread = image is None or isinstance(image, CellError)  # its functions are not called
                    for target, fn in functions:
                        out[target].append(image if unread else _call(fn, image))
                finally:
                    for item in reversed(opened):  # the image before the remote file it reads
                        item.close()
        return out


def _open(value: Any, col_type: ts.ColumnType, ranged: bool, media: Opener, opened: list[Any]) -> Any:
    """The image of a cell (opened from its URL); the cell's None or error, or the error of opening it."""
    if not isinstance(value, str):
        return value
    try:
        return media.open(value, col_type, ranged, opened)
    except Exception as exc:  # not fetched, gone, not an image: every read of it fails so
        return CellError.from_exception(exc)


def _call(fn: Callable[[Any], Any], image: Any) -> Any:
    try:
        return fn(image)
    except Exception as exc:
        return CellError.from_exception(exc)


def header_reads(exprs: Sequence[Expr], computed_here: Collection[str]) -> HeaderReads | None:
    """The expressions as header reads when each is a header-only function of one stored image column; else None.

    A column computed in the same run (its values are not files yet) and functions that must run in
    worker processes take the general evaluation.

    Examples:
        >>> from mediatable.exprs import Literal
        >>> header_reads([Literal(1)], set()) is None
        True
    """
    groups: dict[tuple[str, bool], tuple[ts.ColumnType, list[tuple[int, Callable[[Any], Any]]]]] = {}
    for target, expr in enumerate(exprs):
        if not (isinstance(expr, FunctionCall) and len(expr.args) == 1 and not expr.kwargs):
            return None
        function, ref = expr.function, expr.args[0]
        if not function.header_only or function.isolation == "process":
            return None
        param_type = next(iter(function.param_types.values()), None)  # what the function is given: an image
        if not isinstance(param_type, ts.ImageType) or not isinstance(ref, ColumnRef):
            return None
        if not ref.col_type.is_media or ref.column.name in computed_here:
            return None
        key = (ref.column.name, function.ranged)
        groups.setdefault(key, (param_type, []))[1].append((target, function.fn))
    if not groups:
        return None
    return HeaderReads(
        tuple((name, col_type, ranged, tuple(fns)) for (name, ranged), (col_type, fns) in groups.items()), len(exprs)
    )
