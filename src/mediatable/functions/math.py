"""Built-in number functions, also methods of Int and Float expressions: `t.score.round(2)`, `t.x.abs()`.

Each function is registered on both Int and Float expressions. The result type follows the column:
`t.count.abs()` is Int, `t.score.abs()` is Float; `floor` and `ceil` are always Int. Called directly,
as `mt.functions.math.abs(expr)`, a function has the Float result type (Int values fit in it).

Examples:
    >>> round(2.345, 2), floor(-1.5), clip(12, 0, 10)
    (2.35, -2, 10)
"""

from __future__ import annotations

import builtins
import math as _pymath
from collections.abc import Callable
from typing import Any

from mediatable import types as ts
from mediatable.functions.udf import Function, udf


def _numeric(int_returns: ts.ColumnType) -> Callable[[Callable[..., Any]], Function]:
    """Register a function as a method of Float (result Float) and of Int (result `int_returns`)."""

    def register(fn: Callable[..., Any]) -> Function:
        udf(fn, method_of=ts.Int, returns=int_returns, light=True)
        return udf(fn, method_of=ts.Float, light=True)

    return register


@_numeric(int_returns=ts.Int)
def round(x: float, ndigits: int = 0) -> float:
    """Round to `ndigits` decimals, halves to even (Python's rule: `round(2.5) == 2.0`).

    Examples:
        >>> round(2.675, 1), round(2.5)
        (2.7, 2.0)
        >>> round(1234, -2)
        1200
    """
    return builtins.round(x, ndigits)


@_numeric(int_returns=ts.Int)
def abs(x: float) -> float:
    """Absolute value.

    Examples:
        >>> abs(-3), abs(-2.5)
        (3, 2.5)
    """
    return builtins.abs(x)


@_numeric(int_returns=ts.Int)
def floor(x: float) -> int:
    """The largest integer <= x.

    Examples:
        >>> floor(2.7), floor(-2.1)
        (2, -3)
    """
    return _pymath.floor(x)


@_numeric(int_returns=ts.Int)
def ceil(x: float) -> int:
    """The smallest integer >= x.

    Examples:
        >>> ceil(2.1), ceil(-2.7)
        (3, -2)
    """
    return _pymath.ceil(x)


@_numeric(int_returns=ts.Int)
def clip(x: float, lower: float | None = None, upper: float | None = None) -> float:
    """Limit `x` to `[lower, upper]`; a None bound is no limit. On Int columns, use int bounds.

    Raises:
        ValueError: `lower > upper`.

    Examples:
        >>> clip(12, 0, 10), clip(-1.5, lower=0.0), clip(5, upper=3)
        (10, 0.0, 3)
    """
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"clip: lower ({lower}) > upper ({upper})")
    if lower is not None and x < lower:
        return lower
    if upper is not None and x > upper:
        return upper
    return x
