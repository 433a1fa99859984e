"""What a query does with values that fail while it runs: raise naming the cell, or count and summarize.

A value computed during a query (an expression over media, a UDF, a file fetched for the result)
that fails raises :class:`~mediatable.errors.ComputeError` by default, naming the row, the output,
the URL (redacted) and the cause. With `on_error='ignore'` the cell is None and one line per
output sums up what failed: `2 of 5 values of 'width' failed (1 not found, 1 decode error); see
.errormsg`. Errors read back from stored computed columns are not failures of the query: they are
None, and `.errortype`/`.errormsg` say why.
"""

from __future__ import annotations

import collections

from mediatable.errors import ComputeError
from mediatable.exec.status import plural
from mediatable.exprs import CellError

ON_ERROR = ("abort", "ignore")
_KINDS = {
    "MediaNotFound": "not found",
    "MediaDecodeError": "decode error",
    "MediaAccessDenied": "access denied",
    "MediaFetchTimeout": "timeout",
    "MediaFetchError": "fetch error",
    "MediaConfigError": "configuration error",
}


def kind_of(errortype: str) -> str:
    """A short, readable name for an error type, for summaries.

    Examples:
        >>> kind_of("MediaNotFound"), kind_of("ZeroDivisionError")
        ('not found', 'ZeroDivisionError')
    """
    return _KINDS.get(errortype, errortype)


class Failures:
    """Failed values of one query run, by output (`'width'`, `the where() filter`, ...).

    Examples:
        >>> failures = Failures("ignore", "images")
        >>> failures.seen("'width'", 5)
        >>> failures.failed("'width'", 3, CellError("MediaNotFound", "gone"))
        >>> failures.failed("'width'", 4, CellError("MediaDecodeError", "bad"))
        >>> failures.summary()
        ["2 of 5 values of 'width' failed (1 not found, 1 decode error); see .errormsg"]
    """

    def __init__(self, on_error: str, table: str) -> None:
        self.on_error = on_error
        self.table = table
        self.totals: collections.Counter[str] = collections.Counter()
        self.kinds: dict[str, collections.Counter[str]] = {}
        self.consequences: dict[str, str] = {}

    def seen(self, label: str, n: int) -> None:
        """`n` more values of `label` were computed."""
        self.totals[label] += n

    def failed(self, label: str, row: int | None, error: CellError, consequence: str = "") -> None:
        """One value of `label` failed in `row`: raise (default) or count it.

        Raises:
            ComputeError: `on_error='abort'`; names the query's table, the output and the row.
        """
        if error.stored:
            return
        if self.on_error == "abort":
            where = f"row {row}" if row is not None else "a row"
            raise ComputeError(
                f"query of {self.table!r}: {label} failed at {where}: {error.errortype}: {error.errormsg} "
                "(pass on_error='ignore' to get None for failed values)",
                table=self.table,
                column=label.strip("'"),
                row=row,
            ) from error.exc
        self.kinds.setdefault(label, collections.Counter())[kind_of(error.errortype)] += 1
        if consequence:
            self.consequences[label] = consequence

    def summary(self) -> list[str]:
        """One line per output with failures."""
        lines = []
        for label, kinds in self.kinds.items():
            n = sum(kinds.values())
            total = max(self.totals[label], n)
            detail = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
            consequence = f"; {self.consequences[label]}" if label in self.consequences else ""
            lines.append(f"{n} of {plural(total, 'value')} of {label} failed ({detail}){consequence}; see .errormsg")
        return lines
