"""`ResultSet`: the rows a query returned — iterate for dicts, index by position or column name.

Media cells are held as references (URL + cached file) and opened when a row is read: Image cells
as lazily decoded `PIL.Image.Image` objects, Video/Audio/Document cells as local file paths.
A failed cell is held as its error: users get None (and `.errortype`/`.errormsg` in a query say
why), while the text and HTML displays show the error's type and message.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import PIL.Image
import pyarrow as pa

from mediatable import types as ts
from mediatable.exec.media_cells import MediaCell, user_value
from mediatable.exprs import CellError
from mediatable.io.urls import is_url_like, redact_url
from mediatable.session import Closable
from mediatable.table import convert, display

_SHOWN = 20


class ResultSet:
    """Rows returned by a query: iterate for dicts, index by position or column name.

    Examples:
        >>> rs = ResultSet(["a", "b"], [ts.Int, ts.String], [[1, "x"], [2, "y"]])
        >>> len(rs), rs[0], rs["a"]
        (2, {'a': 1, 'b': 'x'}, [1, 2])
        >>> rs.to_pandas().dtypes.to_dict()
        {'a': Int64Dtype(), 'b': dtype('O')}
    """

    def __init__(
        self,
        columns: list[str],
        col_types: list[ts.ColumnType],
        rows: Sequence[Sequence[Any]],
        fallible: Sequence[bool] | None = None,
        lease: Closable | None = None,
    ) -> None:
        """`fallible[i]`: column `i` may hold failed cells (CellErrors); default: every column may.
        `lease`: the file-cache lease that keeps the media files of the rows; closed when the result is
        garbage-collected (or its session closes)."""
        if lease is not None:
            weakref.finalize(self, lease.close)
        self.columns = columns
        self.col_types = col_types
        self._rows = rows
        may_fail = [True] * len(columns) if fallible is None else list(fallible)
        self._media = [i for i, t in enumerate(col_types) if t.is_media]
        self._converted = {i for i, t in enumerate(col_types) if t.is_media or may_fail[i]}

    def __len__(self) -> int:
        return len(self._rows)

    def _user_row(self, row: Sequence[Any]) -> dict[str, Any]:
        if not self._converted:
            return dict(zip(self.columns, row, strict=True))
        return {name: user_value(value) for name, value in zip(self.columns, row, strict=True)}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self._rows:
            yield self._user_row(row)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(f"no column {key!r} in result (columns: {', '.join(self.columns)})")
            index = self.columns.index(key)
            if index in self._converted:
                return [user_value(row[index]) for row in self._rows]
            return [row[index] for row in self._rows]
        return self._user_row(self._rows[key])

    def _column(self, index: int) -> list[Any]:
        """Stored values (media as references, failed cells as None), for Arrow and pandas."""
        if index in self._converted:
            return [None if isinstance(row[index], CellError) else row[index] for row in self._rows]
        return [row[index] for row in self._rows]

    def to_pandas(self, *, media: str = "url") -> pd.DataFrame:
        """The rows as a pandas DataFrame with real dtypes (nullable `Int64`, `float64`, `bool`, UTC timestamps).

        Args:
            media: media columns as their stored `'url'` or the cached file's local `'path'`.
        """
        series = {
            name: convert.pandas_series(self._column(i), t, media, name)
            for i, (name, t) in enumerate(zip(self.columns, self.col_types, strict=True))
        }
        return pd.DataFrame(series, columns=self.columns, index=pd.RangeIndex(len(self._rows)))

    def to_arrow(self, *, media: str = "url") -> pa.Table:
        """The rows as a `pyarrow.Table` (int64, float64, bool, string, timestamp[us, UTC]; JSON as text).

        Args:
            media: media columns as their stored `'url'` or the cached file's local `'path'`.

        Examples:
            >>> ResultSet(["n"], [ts.Int], [[1], [None]]).to_arrow().column("n").to_pylist()
            [1, None]
        """
        arrays = [
            convert.arrow_array(self._column(i), t, media, name)
            for i, (name, t) in enumerate(zip(self.columns, self.col_types, strict=True))
        ]
        return pa.Table.from_arrays(arrays, names=self.columns)

    def _repr_html_(self) -> str:
        """An HTML table for notebooks: inline thumbnails, first video frames, folded long text."""
        return display.table_html(self.columns, self.col_types, self._rows[:_SHOWN], total=len(self._rows))

    def __repr__(self) -> str:
        shown = self._rows[:_SHOWN]
        cells = [[_cell_text(v) for v in row] for row in shown]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)).rstrip(),
            "  ".join("-" * w for w in widths),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        if len(self._rows) > len(shown):
            lines.append(f"... ({len(self._rows)} rows in all)")
        return "\n".join(lines)


def _cell_text(value: Any) -> str:
    if isinstance(value, CellError):
        text = display.error_text(value)
        return text if len(text) <= 48 else text[:47] + "…"
    if isinstance(value, MediaCell) and value.col_type == ts.Image:
        value = value.value()
    elif isinstance(value, MediaCell):
        value = value.path
    if isinstance(value, PIL.Image.Image):
        return f"<Image {value.width}x{value.height} {value.mode}>"
    if isinstance(value, str) and is_url_like(value):
        value = redact_url(value)  # a stored presigned URL's signature is a secret: never print it
    text = str(value) if value is not None else "None"
    return text if len(text) <= 48 else text[:47] + "…"
