"""`ResultSet`: the rows a query returned — iterate for dicts, index by position or column name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import PIL.Image

from mediatable import types as ts
from mediatable.io.urls import is_url_like, redact_url


class ResultSet:
    """Rows returned by a query: iterate for dicts, index by position or column name.

    Examples:
        >>> rs = ResultSet(["a", "b"], [ts.Int, ts.String], [[1, "x"], [2, "y"]])
        >>> len(rs), rs[0], rs["a"]
        (2, {'a': 1, 'b': 'x'}, [1, 2])
    """

    def __init__(self, columns: list[str], col_types: list[ts.ColumnType], rows: list[list[Any]]) -> None:
        self.columns = columns
        self.col_types = col_types
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self._rows:
            yield dict(zip(self.columns, row, strict=True))

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(f"no column {key!r} in result (columns: {', '.join(self.columns)})")
            index = self.columns.index(key)
            return [row[index] for row in self._rows]
        return dict(zip(self.columns, self._rows[key], strict=True))

    def to_pandas(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (one column per output)."""
        return pd.DataFrame(self._rows, columns=self.columns)

    def __repr__(self) -> str:
        shown = self._rows[:20]
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
    if isinstance(value, PIL.Image.Image):
        return f"<Image {value.width}x{value.height} {value.mode}>"
    if isinstance(value, str) and is_url_like(value):
        value = redact_url(value)  # a stored presigned URL's signature is a secret: never print it
    text = str(value) if value is not None else "None"
    return text if len(text) <= 48 else text[:47] + "…"
