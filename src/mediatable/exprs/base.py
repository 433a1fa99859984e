"""The expression tree's core: :class:`Expr` with its operators, literals, and operator nodes.

Expressions are built by operator overloading on columns (`t.width > 600`, `t.image.rotate(90)`),
typed at construction, and evaluated over batches of rows. Evaluation never raises for one bad row:
a failed value is a :class:`~mediatable.exprs.cells.CellError`, which flows upward, so a row's error
costs that cell only. Filters on stored scalar columns also compile to SQL (`to_sql`) so the database
does the work. Column references live in :mod:`~mediatable.exprs.columns`, function calls and
conditionals in :mod:`~mediatable.exprs.calls`.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.errors import ExprError
from mediatable.exprs import sql
from mediatable.exprs.cells import CellError, EvalEnv, first_error
from mediatable.exprs.methods import lookup_method, method_names


class Expr:
    """Base of every expression. Subclasses set `col_type` and implement `eval_batch`."""

    col_type: ts.ColumnType

    # -- evaluation -----------------------------------------------------------------------------
    def children(self) -> Sequence[Expr]:
        return ()

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        """Values (or CellErrors) for each row environment."""
        raise NotImplementedError

    def to_sql(self, resolve: Callable[[Any], sa.ColumnElement[Any] | None]) -> sa.ColumnElement[Any] | None:
        """A SQL expression computing the same value, or None if it cannot run in SQL.

        Args:
            resolve: maps a catalog column to its SQL column (None if it is not a plain stored value).
        """
        return None

    def sql_value(self, resolve: Callable[[Any], sa.ColumnElement[Any] | None]) -> sa.ColumnElement[Any] | None:
        """The SQL expression of the stored value, also for media columns (their URL); for `is None` tests."""
        return self.to_sql(resolve)

    def walk(self) -> list[Expr]:
        """This expression and all its descendants, depth first."""
        out: list[Expr] = [self]
        for child in self.children():
            out.extend(child.walk())
        return out

    def default_name(self) -> str:
        return "col"

    def with_columns(self, replace: Callable[[Any], Expr]) -> Expr:
        """A copy of this expression with each column reference `ref` replaced by `replace(ref)`.

        Executors use it to bind the references of a join to the side of the join they read.
        """

        def rebuilt(value: Any) -> Any:
            return value.with_columns(replace) if isinstance(value, Expr) else value

        clone = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, Expr):
                setattr(clone, name, rebuilt(value))
            elif isinstance(value, list | tuple) and any(isinstance(v, Expr) for v in value):
                setattr(clone, name, type(value)(rebuilt(v) for v in value))
            elif isinstance(value, dict) and any(isinstance(v, Expr) for v in value.values()):
                setattr(clone, name, {k: rebuilt(v) for k, v in value.items()})
        return clone

    # -- operators ------------------------------------------------------------------------------
    def _binary(self, op: str, other: Any, reverse: bool = False) -> Expr:
        left, right = (as_expr(other), self) if reverse else (self, as_expr(other))
        if op in COMPARISONS:
            return Compare(op, left, right)
        return Arithmetic(op, left, right)

    def __add__(self, other: Any) -> Expr:
        return self._binary("+", other)

    def __radd__(self, other: Any) -> Expr:
        return self._binary("+", other, True)

    def __sub__(self, other: Any) -> Expr:
        return self._binary("-", other)

    def __rsub__(self, other: Any) -> Expr:
        return self._binary("-", other, True)

    def __mul__(self, other: Any) -> Expr:
        return self._binary("*", other)

    def __rmul__(self, other: Any) -> Expr:
        return self._binary("*", other, True)

    def __truediv__(self, other: Any) -> Expr:
        return self._binary("/", other)

    def __rtruediv__(self, other: Any) -> Expr:
        return self._binary("/", other, True)

    def __floordiv__(self, other: Any) -> Expr:
        return self._binary("//", other)

    def __mod__(self, other: Any) -> Expr:
        return self._binary("%", other)

    def __neg__(self) -> Expr:
        return Arithmetic("*", self, Literal(-1))

    def __lt__(self, other: Any) -> Expr:
        return self._binary("<", other)

    def __le__(self, other: Any) -> Expr:
        return self._binary("<=", other)

    def __gt__(self, other: Any) -> Expr:
        return self._binary(">", other)

    def __ge__(self, other: Any) -> Expr:
        return self._binary(">=", other)

    def __eq__(self, other: Any) -> Expr:  # type: ignore[override]
        if other is None:
            return IsNull(self)
        return self._binary("==", other)

    def __ne__(self, other: Any) -> Expr:  # type: ignore[override]
        if other is None:
            return Not(IsNull(self))
        return self._binary("!=", other)

    def __and__(self, other: Any) -> Expr:
        return BoolOp("and", [self, as_expr(other)])

    def __or__(self, other: Any) -> Expr:
        return BoolOp("or", [self, as_expr(other)])

    def __invert__(self) -> Expr:
        return Not(self)

    def __bool__(self) -> bool:
        raise ExprError("an expression has no truth value; use &, |, ~ instead of and, or, not")

    __hash__ = object.__hash__

    def isin(self, values: Sequence[Any]) -> Expr:
        """True where the value is one of `values`. Example: `t.label.isin(['cat', 'dog'])`."""
        return IsIn(self, list(values))

    def is_null(self) -> Expr:
        """True where the value is None. Same as `expr == None`."""
        return IsNull(self)

    def __getitem__(self, key: Any) -> Expr:
        if self.col_type != ts.Json:
            raise ExprError(f"only Json values can be indexed, not {self.col_type!r}")
        return JsonPath(self, key)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "col_type":
            raise AttributeError(name)
        if name in ("errortype", "errormsg"):
            return ErrorProperty(self, name)
        found = lookup_method(self.col_type.name, name)
        if found is None:
            available = ", ".join(method_names(self.col_type.name)) or "none"
            raise AttributeError(f"{self.col_type!r} expressions have no attribute {name!r} (methods: {available})")
        function, is_property = found
        if is_property:  # a Function called on an expression builds the call expression
            return function(self)
        return lambda *args, **kwargs: function(self, *args, **kwargs)


COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}


def as_expr(value: Any) -> Expr:
    """Wrap a plain Python value as a :class:`Literal`; expressions pass through."""
    return value if isinstance(value, Expr) else Literal(value)


class Literal(Expr):
    """A constant."""

    def __init__(self, value: Any) -> None:
        inferred = ts.infer_type(value)
        if inferred is None and value is not None and not isinstance(value, tuple):
            raise ExprError(f"cannot use {type(value).__name__} value {value!r} in an expression")
        self.value = value
        self.col_type = inferred or ts.Json

    def __repr__(self) -> str:
        return repr(self.value)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        return [self.value] * len(envs)

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        return sa.literal(self.value) if isinstance(self.value, str | int | float | bool) else None


class Arithmetic(Expr):
    """`a + b`, `a - b`, `a * b`, `a / b`, `a // b`, `a % b` (None if either side is None)."""

    def __init__(self, op: str, left: Expr, right: Expr) -> None:
        self.op, self.left, self.right = op, left, right
        numeric = (ts.Int, ts.Float)
        if op == "+" and left.col_type == ts.String and right.col_type == ts.String:
            self.col_type = ts.String
        elif left.col_type in numeric and right.col_type in numeric:
            both_int = left.col_type == ts.Int and right.col_type == ts.Int
            self.col_type = ts.Int if both_int and op != "/" else ts.Float
        else:
            raise ExprError(f"cannot compute {left.col_type!r} {op} {right.col_type!r}")

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"

    def children(self) -> Sequence[Expr]:
        return (self.left, self.right)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        fn = ARITHMETIC[self.op]
        out: list[Any] = []
        for a, b in zip(self.left.eval_batch(envs), self.right.eval_batch(envs), strict=True):
            error = first_error((a, b))
            if error is not None or a is None or b is None:
                out.append(error)
                continue
            try:
                out.append(fn(a, b))
            except Exception as exc:
                out.append(CellError.from_exception(exc))
        return out

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        left, right = self.left.to_sql(resolve), self.right.to_sql(resolve)
        if left is None or right is None:
            return None
        if self.op not in ("/", "//", "%"):
            return ARITHMETIC[self.op](left, right)
        # Division runs in SQL only by a nonzero constant: dividing by zero raises in Python (a failed
        # cell), gives NULL in SQLite and aborts the statement in PostgreSQL.
        divisor = self.right.value if isinstance(self.right, Literal) else None
        if isinstance(divisor, bool) or not isinstance(divisor, int | float) or divisor == 0:
            return None
        if self.op == "/":
            return sa.cast(left, sa.Float) / right
        if self.col_type != ts.Int:  # SQLite's % truncates floats to integers
            return None
        return sql.python_mod(left, divisor) if self.op == "%" else sql.python_floordiv(left, divisor)


def comparable(left: ts.ColumnType, right: ts.ColumnType) -> bool:
    """Whether values of the two types can be compared: same kind (numbers with numbers, media
    URLs with strings); Json values compare with anything.

    Examples:
        >>> comparable(ts.Int, ts.Float), comparable(ts.Image, ts.String), comparable(ts.Int, ts.String)
        (True, True, False)
    """

    def kind(t: ts.ColumnType) -> str:
        return "number" if t in (ts.Int, ts.Float) else "String" if t.is_media else t.name

    return ts.Json in (left, right) or kind(left) == kind(right)


class Compare(Expr):
    """`a < b`, `a == b`, ... (None when either side is None, as in SQL).

    Raises:
        ExprError: at construction, when the sides cannot be compared (`t.width > 'abc'`).
    """

    def __init__(self, op: str, left: Expr, right: Expr) -> None:
        # A list or dict literal is a Json value: it compares with Json values only (`t.n == [1]` is a mistake).
        json_literal = any(
            isinstance(a, Literal) and a.col_type == ts.Json and b.col_type != ts.Json
            for a, b in ((left, right), (right, left))
        )
        if json_literal or not comparable(left.col_type, right.col_type):
            raise ExprError(f"cannot compare {left.col_type!r} with {right.col_type!r}: {left!r} {op} {right!r}")
        self.op, self.left, self.right = op, left, right
        self.col_type = ts.Bool

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"

    def children(self) -> Sequence[Expr]:
        return (self.left, self.right)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        fn = COMPARISONS[self.op]
        out: list[Any] = []
        for a, b in zip(self.left.eval_batch(envs), self.right.eval_batch(envs), strict=True):
            error = first_error((a, b))
            if error is not None or a is None or b is None:
                out.append(error)
                continue
            try:
                out.append(bool(fn(a, b)))
            except Exception as exc:
                out.append(CellError.from_exception(exc))
        return out

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        if isinstance(self.left, JsonPath) and isinstance(self.right, Literal):
            return self.left.equals_sql(self.op, self.right.value, resolve)
        if ts.Json in (self.left.col_type, self.right.col_type):
            return None
        left, right = self.left.to_sql(resolve), self.right.to_sql(resolve)
        if left is None or right is None:
            return None
        return COMPARISONS[self.op](left, right)


class BoolOp(Expr):
    """`a & b`, `a | b` with SQL's three-valued logic."""

    def __init__(self, op: str, operands: list[Expr]) -> None:
        self.op, self.operands = op, operands
        self.col_type = ts.Bool

    def __repr__(self) -> str:
        joiner = " & " if self.op == "and" else " | "
        return "(" + joiner.join(repr(o) for o in self.operands) + ")"

    def children(self) -> Sequence[Expr]:
        return self.operands

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        columns = [operand.eval_batch(envs) for operand in self.operands]
        out: list[Any] = []
        for values in zip(*columns, strict=True):
            error = first_error(values)
            if error is not None:
                out.append(error)
            elif self.op == "and":
                out.append(False if any(v is False for v in values) else (None if None in values else True))
            else:
                out.append(True if any(v is True for v in values) else (None if None in values else False))
        return out

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        parts = [operand.to_sql(resolve) for operand in self.operands]
        if any(p is None for p in parts):
            return None
        return sa.and_(*parts) if self.op == "and" else sa.or_(*parts)


class Not(Expr):
    """`~a`."""

    def __init__(self, operand: Expr) -> None:
        self.operand = operand
        self.col_type = ts.Bool

    def __repr__(self) -> str:
        return f"~{self.operand!r}"

    def children(self) -> Sequence[Expr]:
        return (self.operand,)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        return [v if v is None or isinstance(v, CellError) else not v for v in self.operand.eval_batch(envs)]

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        inner = self.operand.to_sql(resolve)
        return None if inner is None else sa.not_(inner)


class IsNull(Expr):
    """`expr == None` / `expr.is_null()`."""

    def __init__(self, operand: Expr) -> None:
        self.operand = operand
        self.col_type = ts.Bool

    def __repr__(self) -> str:
        return f"({self.operand!r} is None)"

    def children(self) -> Sequence[Expr]:
        return (self.operand,)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        return [v is None or isinstance(v, CellError) for v in self.operand.eval_batch(envs)]

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        inner = self.operand.sql_value(resolve)
        return None if inner is None else inner.is_(None)


class IsIn(Expr):
    """`expr.isin([...])`."""

    def __init__(self, operand: Expr, values: list[Any]) -> None:
        for value in values:
            kind = ts.infer_type(value)
            if value is not None and (kind is None or not comparable(operand.col_type, kind)):
                raise ExprError(f"{operand!r} is {operand.col_type!r}; isin() got {type(value).__name__} {value!r}")
        self.operand, self.values = operand, values
        self.col_type = ts.Bool

    def __repr__(self) -> str:
        return f"{self.operand!r}.isin({self.values!r})"

    def children(self) -> Sequence[Expr]:
        return (self.operand,)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        return [v if v is None or isinstance(v, CellError) else v in self.values for v in self.operand.eval_batch(envs)]

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        if self.operand.col_type == ts.Json or None in self.values:
            return None
        inner = self.operand.to_sql(resolve)
        return None if inner is None else inner.in_(self.values)


class JsonPath(Expr):
    """`t.meta['a'][0]`: a missing key or index gives None."""

    def __init__(self, base: Expr, key: Any) -> None:
        self.base, self.key = base, key
        self.col_type = ts.Json

    def __repr__(self) -> str:
        return f"{self.base!r}[{self.key!r}]"

    def default_name(self) -> str:
        return f"{self.base.default_name()}_{self.key}"

    def children(self) -> Sequence[Expr]:
        return (self.base,)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        out: list[Any] = []
        for value in self.base.eval_batch(envs):
            if isinstance(value, CellError) or value is None:
                out.append(value)
            else:
                try:
                    out.append(value[self.key])
                except (KeyError, IndexError, TypeError):
                    out.append(None)
        return out

    def path(self) -> tuple[Expr, list[Any]]:
        """The expression indexed and the keys, outermost last (`t.meta['a'][0]` -> t.meta, ['a', 0])."""
        if isinstance(self.base, JsonPath):
            root, keys = self.base.path()
            return root, [*keys, self.key]
        return self.base, [self.key]

    def equals_sql(self, op: str, value: Any, resolve: Callable[[Any], Any]) -> Any:
        """SQL for `self == value` or `self != value` with a string or number `value`, or None.

        Ordering comparisons stay in Python: there a string compared with a number fails the row
        (raising by default), where SQL would only leave it out.
        """
        root, keys = self.path()
        if op not in ("==", "!=") or isinstance(value, bool) or not isinstance(value, str | int | float):
            return None
        if not all(isinstance(k, str) for k in keys):  # PostgreSQL reads an int key of an object as a name
            return None
        column = root.to_sql(resolve)
        return None if column is None else sql.JsonPathEquals(column, keys, value, negated=op == "!=")


class ErrorProperty(Expr):
    """`expr.errortype` / `expr.errormsg`: why `expr` failed in a row, None where it did not fail."""

    def __init__(self, operand: Expr, prop: str, subject: Expr | None = None) -> None:
        if prop not in ("errortype", "errormsg"):
            raise ExprError(f"unknown error property {prop!r} (errortype or errormsg)")
        self.operand, self.prop = operand, prop
        self.subject = subject if subject is not None else operand  # what users wrote before `.errortype` (for names)
        self.col_type = ts.String

    def __repr__(self) -> str:
        return f"{self.subject!r}.{self.prop}"

    def default_name(self) -> str:
        return f"{self.subject.default_name()}_{self.prop}"

    def children(self) -> Sequence[Expr]:
        return (self.operand,)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        return [getattr(v, self.prop) if isinstance(v, CellError) else None for v in self.operand.eval_batch(envs)]
