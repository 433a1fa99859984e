"""Values that failed, and what evaluation needs from the executor.

A failed value is a :class:`CellError` carried in place of the value: it flows upward through
the expressions that read it, so one bad row costs that cell only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from mediatable import types as ts


class CellError:
    """A value that could not be computed, carried in place of the value.

    Attributes:
        errortype: short type name (`MediaNotFound`, `ZeroDivisionError`, ...).
        errormsg: human message; names the URL (redacted) or the upstream cell.
        exc: the exception, when it happened in this process.
        stored: the error was read back from a stored computed column (it happened when the column
            was computed, not now); queries return such cells as None without raising.
    """

    __slots__ = ("errormsg", "errortype", "exc", "stored")

    def __init__(
        self, errortype: str, errormsg: str, exc: BaseException | None = None, *, stored: bool = False
    ) -> None:
        self.errortype = errortype
        self.errormsg = errormsg
        self.exc = exc
        self.stored = stored

    def reworded(self, errormsg: str) -> CellError:
        """The same error with another message (keeps type, exception and origin)."""
        return CellError(self.errortype, errormsg, self.exc, stored=self.stored)

    @classmethod
    def from_exception(cls, exc: BaseException, context: str = "") -> CellError:
        message = str(exc) or type(exc).__name__
        return cls(type(exc).__name__, f"{context}{message}", exc)

    def __repr__(self) -> str:
        return f"CellError({self.errortype}: {self.errormsg})"


class EvalEnv(Protocol):
    """What evaluation needs from the executor, one instance per row."""

    def column_value(self, column: Any) -> Any:
        """The row's stored (or already computed) value of `column`, or a CellError."""

    def open_media(self, url: str, col_type: ts.ColumnType, ranged: bool = False) -> Any:
        """A readable local object for a media URL: PIL image for Image, local path str otherwise.

        With `ranged` (the function reads only parts of it), a large remote object may instead be
        a seekable file object over its blocks (an image opened from one, for Image).
        """

    def local_path(self, url: str) -> str:
        """The local file path for a media URL (fetched through the cache when remote)."""

    def presign(self, urls: Sequence[str], expiration_seconds: int) -> Sequence[Any]:
        """Presigned HTTPS URLs for `urls` (an exception in place of each that cannot be signed)."""

    def run_call(self, call: Any, envs: Sequence[Any], here: Callable[[Sequence[Any]], list[Any]]) -> list[Any]:
        """Values of a function call over `envs` (rows of one batch): `here(envs)` evaluates it in this
        thread; an executor may run it elsewhere (another process) with the same results."""


def first_error(values: Sequence[Any]) -> CellError | None:
    """The first CellError among `values`, or None.

    Examples:
        >>> first_error([1, CellError("ValueError", "bad"), None])
        CellError(ValueError: bad)
    """
    for value in values:
        if isinstance(value, CellError):
            return value
    return None
