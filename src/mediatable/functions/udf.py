"""`@udf`: turn a typed Python function into a mediatable function usable in expressions.

Called with plain values, a :class:`Function` simply runs; called with an expression (a column, ...)
it returns an expression that the table evaluates per row (or per batch, with `batch_size`).

Parameters annotated with a media type receive a readable local object: `mt.Image` -> a lazily
opened `PIL.Image.Image` (only the header is read until pixels are needed); `mt.Video`, `mt.Audio`,
`mt.Document` -> the local file path (`str`). A function returning `mt.Image` returns a PIL image;
returning `mt.Video`/`mt.Audio`/`mt.Document` it returns the path of a file it wrote.

Where a function runs (`isolation`): on the pipeline's threads, which suits code that releases the
GIL (Pillow, PyAV, numpy, ONNX, I/O), or in the session's worker processes, which suits pure-Python
code that holds it. `'auto'` (the default) starts on threads and moves a function to the processes
when the pipeline measures that it keeps one core busy with the GIL held (see :mod:`mediatable.exec.workers`).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

import PIL.Image

from mediatable import types as ts
from mediatable.errors import ExprError
from mediatable.exprs import Expr, FunctionCall
from mediatable.exprs.methods import register_method

ISOLATIONS = ("auto", "thread", "process")


class Function:
    """A named, typed function over cell values.

    Attributes:
        name: qualified name shown in errors and `describe()`.
        return_type: the column type of its results.
        param_types: parameter name -> column type (None when unannotated).
        batch_size: when set, the function takes lists and returns a list of the same length.
        light: cheap per call (a header read, string work): the pipeline runs it on one thread,
            since Python-level work does not speed up on more threads and pays for switching.
        sql: builds the same computation in SQL from the SQL forms of the positional arguments
            (so filters using it run in the database); None when it only runs in Python.
        ranged: reads only parts of its media arguments, and takes a seekable binary file object
            in place of a path (an image opened from one, for images): large remote objects are
            then read by ranges instead of downloaded whole.
        isolation: `'thread'`, `'process'` or `'auto'` (see the module docstring).
        header_only: reads only the header of its one image argument (size, mode), never its
            pixels: the pipeline opens, reads and closes each image in one step for it.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        return_type: ts.ColumnType | None = None,
        batch_size: int | None = None,
        light: bool = False,
        sql: Callable[..., Any] | None = None,
        ranged: bool = False,
        isolation: str = "auto",
        header_only: bool = False,
    ) -> None:
        if isolation not in ISOLATIONS:
            raise ExprError(f"isolation must be one of {', '.join(map(repr, ISOLATIONS))}, not {isolation!r}")
        self.fn = fn
        self.light = light or header_only  # a header read is cheap and Python-bound
        self.sql = sql
        self.ranged = ranged
        self.isolation = isolation
        self.header_only = header_only
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.batch_size = batch_size
        self.signature = inspect.signature(fn)
        hints = _hints(fn)
        self.param_types: dict[str, ts.ColumnType | None] = {
            p: _as_type(hints.get(p), batch=batch_size is not None) for p in self.signature.parameters
        }
        declared = return_type if return_type is not None else _as_type(hints.get("return"), batch_size is not None)
        if declared is None:
            raise ExprError(f"{self.name}: annotate the return type (e.g. '-> float') or pass returns=")
        self.return_type: ts.ColumnType = declared
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<mediatable function {self.name} -> {self.return_type!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, Expr) for a in (*args, *kwargs.values())):
            return FunctionCall(self, args, kwargs)
        return self.fn(*args, **kwargs)


def udf(
    fn: Callable[..., Any] | None = None,
    *,
    returns: Any = None,
    batch_size: int | None = None,
    name: str | None = None,
    method_of: ts.ColumnType | None = None,
    is_property: bool = False,
    light: bool = False,
    sql: Callable[..., Any] | None = None,
    ranged: bool = False,
    isolation: str = "auto",
    header_only: bool = False,
) -> Any:
    """Decorate a function so it can be used in expressions and computed columns.

    Args:
        fn: the function; its type hints give parameter and return types.
        returns: the return column type, when the annotation is missing or ambiguous.
        batch_size: receive lists of up to this many values per call (for models).
        name: a display name (default: the function's qualified name).
        method_of: also expose it as a method of expressions of this type (`t.image.rotate(90)`),
            with the expression as first argument.
        is_property: with `method_of`, expose it as a property (`t.image.width`), not a method.
        light: the function is cheap and Python-bound (no decode, no I/O): run it without a thread pool.
        sql: the same computation in SQL, from the SQL forms of the positional arguments (built-ins use it
            so filters run in the database); it must give exactly what the function gives.
        ranged: the function reads only parts of its media arguments and accepts a seekable binary
            file object as well as a path (for `mt.Video`, `mt.Audio`; images come opened from
            one): large remote objects are read by ranges instead of downloaded whole.
        isolation: where it runs in tables and queries: `'thread'` (the pipeline's threads: for code
            that releases the GIL, or that needs this process's state), `'process'` (the session's
            worker processes, `compute_workers` of them: for pure-Python work; the function and its
            results must pickle, and a model it loads into a module-level cache loads once per
            worker), or `'auto'` (default: threads, moved to the processes when measured GIL-bound).
        header_only: the function takes one image and reads only its header (size, mode, format),
            never its pixels: a table opens, reads and closes each image in one step for it instead
            of keeping it open for the row's other functions (a header-only column over cached files
            then runs at about the speed of a bare loop).

    Returns:
        A :class:`Function` (or a decorator, when called with keyword arguments only).

    Examples:
        >>> import mediatable as mt
        >>> @mt.udf
        ... def double(x: int) -> int:
        ...     return 2 * x
        >>> double(21)
        42
        >>> double.return_type
        Int
    """

    def wrap(f: Callable[..., Any]) -> Function:
        function = Function(
            f,
            name=name,
            return_type=ts.as_column_type(returns) if returns is not None else None,
            batch_size=batch_size,
            light=light,
            sql=sql,
            ranged=ranged,
            isolation=isolation,
            header_only=header_only,
        )
        if method_of is not None:
            register_method(method_of.name, f.__name__, function, is_property)
        return function

    return wrap(fn) if fn is not None else wrap


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # annotations that cannot be resolved: use them raw
        return dict(getattr(fn, "__annotations__", {}))


def _as_type(hint: Any, batch: bool = False) -> ts.ColumnType | None:
    if hint is None or hint is inspect.Parameter.empty or hint is typing.Any:
        return None
    if batch and typing.get_origin(hint) in (list, typing.List):  # noqa: UP006
        (hint,) = typing.get_args(hint) or (None,)
        return _as_type(hint)
    if isinstance(hint, ts.ColumnType):
        return hint
    if hint is PIL.Image.Image:
        return ts.Image
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _as_type(args[0], batch) if len(args) == 1 else None  # an optional list of a batched parameter
    if origin in (dict, list):
        return ts.Json
    try:
        return ts.as_column_type(hint)
    except Exception:
        return None
