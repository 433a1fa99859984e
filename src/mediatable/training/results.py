"""The rows of a query that combines rows (a join, `group_by`, `distinct`, aggregates), computed once.

Such rows have no ids of one table to re-read in a worker, so :class:`QueryResults` runs the query
when the dataset is made and keeps its output rows, in order, in memory (in the building process,
and in every worker it is sent to). Media columns a join selects as they are stay references: the
rows hold the stored URL, and the reading process (a DataLoader worker) fetches the files through
the shared file cache, as :class:`~mediatable.training.source.RowSnapshot` does; media the query
computes itself (a resized image, say) is computed when the dataset is made. A row's id is its
position in the result.

:func:`query_rows` picks the source a query needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mediatable import types as ts
from mediatable.errors import MediaError
from mediatable.exec import query as run
from mediatable.exec.ahead import ahead
from mediatable.exec.media_cells import MediaCell
from mediatable.exec.query import QuerySpec
from mediatable.exec.rowsets import RowValues
from mediatable.exprs import CellError, ColumnProperty, ColumnRef, Expr
from mediatable.session import Session
from mediatable.training.source import ProcessSessions, RowSnapshot


@dataclasses.dataclass(frozen=True)
class _Media:
    """A media value to fetch in the reading process: its stored URL (or local path) and type."""

    url: str
    col_type: ts.ColumnType


class QueryResults:
    """The output rows of a join or grouped query, kept in order; media fetched by the process that reads.

    Same reading interface as :class:`~mediatable.training.source.RowSnapshot` (`rowids` are
    positions in the result).

    Args:
        session: the session building it.
        spec: the query; it runs now, once.
        on_error: for the query's own values: 'abort' raises on the first failure, 'ignore' keeps
            failed values (the dataset's `on_error` then decides) and leaves out rows whose filter failed.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> session = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('marks', {'who': mt.String, 'mark': mt.Int})
        Created table 'marks'.
        >>> _ = t.insert([{'who': 'a', 'mark': 3}, {'who': 'b', 'mark': 5}, {'who': 'a', 'mark': 4}], quiet=True)
        >>> totals = t.group_by(t.who).order_by(t.who).select(t.who, total=mt.functions.sum(t.mark))
        >>> rows = QueryResults(session, totals._spec)
        >>> rows.names, list(rows.read(rows.rowids))
        (('who', 'total'), [[(0, ['a', 7]), (1, ['b', 5])]])
    """

    def __init__(self, session: Session, spec: QuerySpec, on_error: str = "abort") -> None:
        outputs = spec.outputs()
        self.names = tuple(name for name, _ in outputs)
        self.col_types = tuple(expr.col_type for _, expr in outputs)
        self.table_path = run.subject(spec)
        self.sessions = ProcessSessions(session, dataclasses.replace(session.settings, progress=False))
        selected, self._errors = _unfetched(outputs, grouped=spec.grouped)
        width = len(outputs)
        self._rows: list[list[Any]] = []
        with session.cache_lease() as lease:
            batches = run.run_batches(
                session, dataclasses.replace(spec, select=tuple(selected)), on_error=on_error, lease=lease
            )
            for batch in batches:
                self._rows.extend(self._kept(row, width) for row in batch)
        self.rowids = np.arange(len(self._rows), dtype=np.int64)

    def _kept(self, row: Sequence[Any], width: int) -> list[Any]:
        """An output row as held: media as :class:`_Media`, errors without their exception (they travel)."""
        kept = []
        for i, value in enumerate(row[:width]):
            error = self._errors.get(i)
            if error is not None and row[error] is not None:
                value = CellError(row[error], row[error + 1], stored=True)
            elif isinstance(value, MediaCell):
                value = _Media(value.url if value.url is not None else value.path, value.col_type)
            elif isinstance(value, str) and self.col_types[i].is_media:
                value = _Media(value, self.col_types[i])
            if isinstance(value, CellError):
                value = CellError(value.errortype, value.errormsg, stored=value.stored)
            kept.append(value)
        return kept

    def __len__(self) -> int:
        return len(self._rows)

    def session(self) -> Session:
        """The session of this process."""
        return self.sessions.get()

    def read(
        self, rowids: Sequence[int], batch_size: int = 64, *, check_media: bool = True, prefetch: bool = False
    ) -> Iterator[list[RowValues]]:
        """The rows at positions `rowids`, in that order, in batches; media fetched through this process's cache.

        Args: as :meth:`RowSnapshot.read <mediatable.training.source.RowSnapshot.read>`.
        """
        session = self.session()
        with session.cache_lease() as lease:
            batches = self._batches(lease, rowids, batch_size, check_media)
            with contextlib.closing(ahead(batches) if prefetch else batches) as reading:
                yield from reading

    def _batches(
        self, lease: Any, rowids: Sequence[int], batch_size: int, check_media: bool
    ) -> Iterator[list[RowValues]]:
        for start in range(0, len(rowids), batch_size):
            positions = [int(p) for p in rowids[start : start + batch_size]]
            rows = [list(self._rows[p]) for p in positions]
            media = [(row, i) for row in rows for i, value in enumerate(row) if isinstance(value, _Media)]
            for (row, i), got in zip(media, lease.get_many([row[i].url for row, i in media]), strict=True):
                row[i] = _fetched(row[i], got, check_media)
            yield list(zip(positions, rows, strict=True))

    def close(self) -> None:
        """Close the session this process opened for reading (if any)."""
        self.sessions.close()


def _unfetched(outputs: Sequence[tuple[str, Expr]], *, grouped: bool) -> tuple[list[tuple[str, Expr]], dict[int, int]]:
    """The outputs to run now: a media column selected as is becomes its stored URL (fetched later, by the
    reader), with its stored error's type and message when it is computed. Returns them and, by output,
    the position of its error type (its message follows)."""
    if grouped:  # outputs are group keys and aggregates: they run as they are
        return list(outputs), {}
    selected, extra, errors = list(outputs), [], {}
    for i, (name, expr) in enumerate(outputs):
        if isinstance(expr, ColumnRef) and expr.col_type.is_media:
            selected[i] = (name, ColumnProperty(expr, "fileurl"))
            if expr.column.is_computed:
                errors[i] = len(outputs) + len(extra)
                extra += [(f"__errortype{i}", ColumnProperty(expr, "errortype"))]
                extra += [(f"__errormsg{i}", ColumnProperty(expr, "errormsg"))]
    return selected + extra, errors


def _fetched(media: _Media, got: Any, check_media: bool) -> MediaCell | CellError:
    if isinstance(got, MediaError):
        return CellError.from_exception(got)
    cell = MediaCell(media.url, str(got), media.col_type)
    if check_media:
        try:
            cell.check()
        except MediaError as exc:
            return CellError.from_exception(exc)
    return cell


def query_rows(session: Session, spec: QuerySpec, on_error: str = "abort") -> RowSnapshot | QueryResults:
    """The rows a dataset reads: a snapshot of row ids, or (joins, grouped queries) the rows themselves.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> session = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('tags', {'tag': mt.String})
        Created table 'tags'.
        >>> type(query_rows(session, t._query()._spec)).__name__, type(query_rows(session, t.distinct()._spec)).__name__
        ('RowSnapshot', 'QueryResults')
    """
    if spec.grouped or spec.join is not None:
        return QueryResults(session, spec, on_error)
    return RowSnapshot(session, spec, on_error)
