"""Aggregates over groups of rows: `count`, `sum`, `mean`, `min`, `max` (built by `mt.functions.count(...)`).

An aggregate is an expression over many rows; it appears in the select list of a `group_by()` query
(or of a query selecting only aggregates, which is one group). It runs in SQL when its input is a
stored column, in Python otherwise, with SQL's rules either way: None values are skipped, `count()`
counts rows, and `sum`/`mean`/`min`/`max` of no values is None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.errors import ExprError
from mediatable.exprs.base import Expr
from mediatable.exprs.cells import EvalEnv

KINDS = ("count", "sum", "mean", "min", "max")
_ORDERED = ("Int", "Float", "String", "Timestamp")  # PostgreSQL has no min/max of booleans


class Aggregate(Expr):
    """`count(x)`, `sum(x)`, `mean(x)`, `min(x)`, `max(x)`; `count()` counts rows.

    Examples:
        >>> from mediatable.exprs import Literal
        >>> Aggregate("mean", Literal(2)).col_type, Aggregate("count", None).col_type
        (Float, Int)
    """

    def __init__(self, kind: str, operand: Expr | None) -> None:
        if kind not in KINDS:
            raise ExprError(f"unknown aggregate {kind!r} ({', '.join(KINDS)})")
        if operand is None and kind != "count":
            raise ExprError(f"{kind}() needs a value to aggregate")
        if operand is not None and any(isinstance(n, Aggregate) for n in operand.walk()):
            raise ExprError(f"aggregates cannot be nested: {kind}({operand!r})")
        type_name = operand.col_type.name if operand is not None else ""
        if kind in ("sum", "mean") and type_name not in ("Int", "Float"):
            raise ExprError(f"{kind}() needs numbers, not {operand.col_type!r}: {operand!r}")  # type: ignore[union-attr]
        if kind in ("min", "max") and type_name not in _ORDERED:
            raise ExprError(f"{kind}() needs ordered values, not {operand.col_type!r}: {operand!r}")  # type: ignore[union-attr]
        self.kind, self.operand = kind, operand
        if kind == "count":
            self.col_type = ts.Int
        elif kind == "mean":
            self.col_type = ts.Float
        else:
            self.col_type = operand.col_type  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"{self.kind}({self.operand!r})" if self.operand is not None else "count()"

    def default_name(self) -> str:
        return self.kind if self.operand is None else f"{self.kind}_{self.operand.default_name()}"

    def children(self) -> Sequence[Expr]:
        return (self.operand,) if self.operand is not None else ()

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        raise ExprError(f"{self!r} aggregates rows: use it in select() of a group_by() query")

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        if self.operand is None:
            return sa.func.count()
        value = self.operand.sql_value(resolve) if self.kind == "count" else self.operand.to_sql(resolve)
        if value is None:
            return None
        if self.kind == "count":
            return sa.func.count(value)
        if self.kind == "mean":
            return sa.cast(sa.func.avg(value), sa.Float)
        if self.kind == "sum":  # PostgreSQL sums integers as NUMERIC
            return sa.cast(sa.func.sum(value), sa.BigInteger if self.col_type == ts.Int else sa.Float)
        return getattr(sa.func, self.kind)(value)

    def accumulator(self) -> Accumulator:
        """A fresh accumulator for one group (the Python path)."""
        return Accumulator(self.kind, counts_rows=self.operand is None)


class Accumulator:
    """One aggregate's running state over one group.

    Examples:
        >>> acc = Accumulator("mean")
        >>> for v in (1, None, 4):
        ...     acc.add(v)
        >>> acc.result()
        2.5
    """

    __slots__ = ("counts_rows", "kind", "n", "value")

    def __init__(self, kind: str, counts_rows: bool = False) -> None:
        self.kind, self.counts_rows = kind, counts_rows
        self.n = 0
        self.value: Any = None

    def add(self, value: Any) -> None:
        if value is None and not self.counts_rows:
            return
        self.n += 1
        if self.kind in ("sum", "mean"):
            self.value = value if self.value is None else self.value + value
        elif self.kind in ("min", "max") and (
            self.value is None or (value < self.value if self.kind == "min" else value > self.value)
        ):
            self.value = value  # min or max

    def result(self) -> Any:
        if self.kind == "count":
            return self.n
        if self.kind == "mean":
            return None if self.n == 0 else self.value / self.n
        return self.value


def has_aggregate(expr: Expr) -> bool:
    """Whether `expr` contains an aggregate."""
    return any(isinstance(node, Aggregate) for node in expr.walk())
