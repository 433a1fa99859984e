"""Reading chosen rows by id, in a given order: what a training data loader's workers do with their share.

A process that was handed a list of row ids (a snapshot of a query's result, dealt out to workers
and ranks) reads those rows in batches: one SQL query per batch (`WHERE _rowid IN (...)`), then the
query's outputs computed through the :class:`~mediatable.exec.pipeline.Pipeline`, which fetches
every media file of the batch through the file cache at once (bounded concurrency), before the
batch is handed over; outputs that are stored columns as they are skip the pipeline and only
fetch their files (one `get_many` window of the cache). Wrap the iterator in
:func:`~mediatable.exec.ahead.ahead` to fetch the next batch while the current one is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from mediatable.catalog.catalog import read_only
from mediatable.catalog.model import TableMeta
from mediatable.errors import MediaError
from mediatable.exec.pipeline import preflight
from mediatable.exec.query import output_targets, output_values, referenced_columns, session_pipeline
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exprs import CellError, ColumnRef, Expr
from mediatable.session import Session

RowValues = tuple[int, list[Any] | None]
"""One row read by id: `(rowid, output values)`; the values are None when the row no longer exists."""


def rows_by_id(
    session: Session,
    meta: TableMeta,
    outputs: Sequence[tuple[str, Expr]],
    rowids: Sequence[int],
    batch_size: int = 64,
    *,
    check_media: bool = True,
    lease: Any | None = None,
) -> Iterator[list[RowValues]]:
    """The outputs of the rows `rowids` of `meta`'s table, in the order given, `batch_size` rows at a time.

    Values are as :func:`~mediatable.exec.query.output_values` gives them: media columns as
    :class:`~mediatable.exec.media_cells.MediaCell` (the file is in the cache, pinned by this
    iteration's lease until it moves on), failed values as :class:`~mediatable.exprs.CellError`.

    Args:
        session: the session of this process.
        meta: the table or view.
        outputs: (name, expression) pairs over `meta`'s columns.
        rowids: the rows to read, in the order wanted (ids of `meta`'s own rows).
        batch_size: rows per SQL query and per pipeline run (their media is fetched together).
        check_media: read each image's header now (False: the caller decodes it and reports failures).
        lease: the cache lease to fetch through, kept open by the caller as long as it uses the files
            (a batch fetched ahead outlives this iterator); without one, a lease closed when the rows end.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> session = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('nums', {'n': mt.Int})
        Created table 'nums'.
        >>> _ = t.insert([{'n': 10}, {'n': 20}, {'n': 30}], quiet=True)
        >>> list(rows_by_id(session, t._meta, [('n', t.n), ('m', t.n + 1)], [3, 1, 7], batch_size=2))
        [[(3, [30, 31]), (1, [10, 11])], [(7, None)]]
    """
    sql = TableSql(meta)
    columns = referenced_columns([expr for _, expr in outputs], sql.columns)
    targets = output_targets(outputs)
    # Stored columns as they are (a training set's image and label) need no compute stage: the batch's
    # files are fetched in one window of the cache, without the pipeline's threads and chunks (~1 ms a row).
    stored_only = all(isinstance(expr, ColumnRef) for _, expr in outputs)
    with contextlib.nullcontext(lease) if lease is not None else session.cache_lease() as lease:
        pipeline = session_pipeline(session, lease)
        for start in range(0, len(rowids), batch_size):
            wanted = [int(rowid) for rowid in rowids[start : start + batch_size]]
            with read_only(session.engine) as conn:
                found = {row[ROWID]: row for row in sql.read(conn, columns, rowids=wanted)}
            rows = list(found.values())
            if stored_only:
                _stored_outputs(lease, rows, outputs)
            else:
                preflight(rows, outputs)
                pipeline.run(rows, targets)
            yield [
                (rowid, output_values(found[rowid], outputs, check_media=check_media) if rowid in found else None)
                for rowid in wanted
            ]


def _stored_outputs(lease: Any, rows: list[dict[str, Any]], outputs: Sequence[tuple[str, Expr]]) -> None:
    """Set each row's outputs (`__out<i>`, as the pipeline does) when every output is a stored column:
    values as read, media as the local file fetched through `lease` (or the fetch's error)."""
    wanted: list[tuple[dict[str, Any], str, str]] = []
    for row in rows:
        for i, (_, expr) in enumerate(outputs):
            value = row.get(expr.column.name)  # type: ignore[attr-defined]
            if expr.col_type.is_media and isinstance(value, str):
                wanted.append((row, f"__out{i}", value))
            else:
                row[f"__out{i}"] = value  # a stored error stays the column's own (see output_values)
    for (row, key, _), got in zip(wanted, lease.get_many([url for _, _, url in wanted]), strict=True):
        row[key] = CellError.from_exception(got) if isinstance(got, MediaError) else str(got)
