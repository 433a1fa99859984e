"""The expression tree: column references, literals, operators and function calls.

Expressions are built by operator overloading on columns (`t.width > 600`, `t.image.rotate(90)`),
typed at construction, and evaluated over batches of rows. Evaluation never raises for one bad row:
a failed value is a :class:`CellError`, which flows upward, so a row's error costs that cell only.
Filters on stored scalar columns also compile to SQL (`to_sql`) so the database does the work.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.errors import ExprError
from mediatable.exprs.methods import lookup_method, method_names


class CellError:
    """A value that could not be computed, carried in place of the value.

    Attributes:
        errortype: short type name (`MediaNotFound`, `ZeroDivisionError`, ...).
        errormsg: human message; names the URL (redacted) or the upstream cell.
    """

    __slots__ = ("errormsg", "errortype", "exc")

    def __init__(self, errortype: str, errormsg: str, exc: BaseException | None = None) -> None:
        self.errortype = errortype
        self.errormsg = errormsg
        self.exc = exc

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

    def open_media(self, url: str, col_type: ts.ColumnType) -> Any:
        """A readable local object for a media URL: PIL image for Image, local path str otherwise."""

    def local_path(self, url: str) -> str:
        """The local file path for a media URL (fetched through the cache when remote)."""


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

    def walk(self) -> list[Expr]:
        """This expression and all its descendants, depth first."""
        out: list[Expr] = [self]
        for child in self.children():
            out.extend(child.walk())
        return out

    def default_name(self) -> str:
        return "col"

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
        found = lookup_method(self.col_type.name, name)
        if found is None:
            available = ", ".join(method_names(self.col_type.name)) or "none"
            raise AttributeError(f"{self.col_type!r} expressions have no attribute {name!r} (methods: {available})")
        function, is_property = found
        if is_property:
            return FunctionCall(function, (self,), {})
        return lambda *args, **kwargs: FunctionCall(function, (self, *args), kwargs)


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


def _first_error(values: Sequence[Any]) -> CellError | None:
    for value in values:
        if isinstance(value, CellError):
            return value
    return None


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


class ColumnRef(Expr):
    """A column of a table or view (`t.label`, `t['label']`).

    Media columns have extra properties: `.localpath` (cached local file), `.fileurl` (stored URL);
    computed columns have `.errortype` and `.errormsg`.
    """

    def __init__(self, column: Any) -> None:
        self.column = column
        self.col_type = column.col_type

    def __repr__(self) -> str:
        return f"{self.column.table_name}.{self.column.name}"

    def default_name(self) -> str:
        return str(self.column.name)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        out = []
        for env in envs:
            value = env.column_value(self.column)
            if isinstance(value, CellError):  # a value computed from a failed cell names that cell
                value = CellError(value.errortype, f"upstream column {self.column.name!r} failed: {value.errormsg}")
            out.append(value)
        return out

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        return None if self.col_type.is_media else resolve(self.column)

    def __getattr__(self, name: str) -> Any:
        if name in ("errortype", "errormsg"):
            return ColumnProperty(self, name)
        if name in ("localpath", "fileurl"):
            if not self.col_type.is_media:
                raise AttributeError(f"{name} exists only on media columns, not on {self.col_type!r}")
            return ColumnProperty(self, name)
        return super().__getattr__(name)


class ColumnProperty(Expr):
    """`col.errortype`, `col.errormsg`, `col.localpath` or `col.fileurl`."""

    def __init__(self, ref: ColumnRef, prop: str) -> None:
        self.ref = ref
        self.prop = prop
        self.col_type = ts.String

    def __repr__(self) -> str:
        return f"{self.ref!r}.{self.prop}"

    def default_name(self) -> str:
        return f"{self.ref.default_name()}_{self.prop}"

    def children(self) -> Sequence[Expr]:
        return (self.ref,)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        out: list[Any] = []
        for env in envs:
            value = env.column_value(self.ref.column)
            if self.prop in ("errortype", "errormsg"):
                out.append(getattr(value, self.prop) if isinstance(value, CellError) else None)
            elif value is None or isinstance(value, CellError):
                out.append(None)
            elif self.prop == "fileurl":
                out.append(value)
            else:
                try:
                    out.append(env.local_path(value))
                except Exception as exc:
                    out.append(CellError.from_exception(exc))
        return out


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
            error = _first_error((a, b))
            if error is not None or a is None or b is None:
                out.append(error)
                continue
            try:
                out.append(fn(a, b))
            except Exception as exc:
                out.append(CellError.from_exception(exc))
        return out

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        if self.op in ("//", "%", "/"):
            return None  # integer-division semantics differ between SQLite, PostgreSQL and Python
        left, right = self.left.to_sql(resolve), self.right.to_sql(resolve)
        if left is None or right is None:
            return None
        return ARITHMETIC[self.op](left, right)


class Compare(Expr):
    """`a < b`, `a == b`, ... (None when either side is None, as in SQL)."""

    def __init__(self, op: str, left: Expr, right: Expr) -> None:
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
            error = _first_error((a, b))
            if error is not None or a is None or b is None:
                out.append(error)
                continue
            try:
                out.append(bool(fn(a, b)))
            except Exception as exc:
                out.append(CellError.from_exception(exc))
        return out

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
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
            error = _first_error(values)
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
        inner = self.operand.to_sql(resolve) if not self.operand.col_type.is_media else None
        if inner is None and isinstance(self.operand, ColumnRef):
            inner = resolve(self.operand.column)
        return None if inner is None else inner.is_(None)


class IsIn(Expr):
    """`expr.isin([...])`."""

    def __init__(self, operand: Expr, values: list[Any]) -> None:
        self.operand, self.values = operand, values
        self.col_type = ts.Bool

    def __repr__(self) -> str:
        return f"{self.operand!r}.isin({self.values!r})"

    def children(self) -> Sequence[Expr]:
        return (self.operand,)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        return [v if v is None or isinstance(v, CellError) else v in self.values for v in self.operand.eval_batch(envs)]

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
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


class FunctionCall(Expr):
    """A call of a :class:`~mediatable.functions.udf.Function` on expressions and constants.

    A None argument gives None without calling; a CellError argument gives a CellError naming it.
    Functions with `batch_size` are called once per chunk of rows with lists.
    """

    def __init__(self, function: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        self.function = function
        self.args = [as_expr(a) for a in args]
        self.kwargs = {k: as_expr(v) for k, v in kwargs.items()}
        self.col_type = function.return_type
        try:
            bound = function.signature.bind(*self.args, **self.kwargs)
        except TypeError as exc:
            raise ExprError(f"{function.name}: {exc}") from exc
        self._media_params = {
            name for name, t in function.param_types.items() if t is not None and t.is_media and name in bound.arguments
        }
        # the parameter each positional argument binds to (a *args parameter takes all the rest)
        positional = [
            p for p in function.signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        var_positional = [p.name for p in function.signature.parameters.values() if p.kind == p.VAR_POSITIONAL]
        self._param_names = [
            positional[j].name if j < len(positional) else var_positional[0] for j in range(len(self.args))
        ]

    def __repr__(self) -> str:
        args = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.function.name.rsplit('.', 1)[-1]}({', '.join(args)})"

    def default_name(self) -> str:
        return str(self.function.name.rsplit(".", 1)[-1])

    def children(self) -> Sequence[Expr]:
        return [*self.args, *self.kwargs.values()]

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        arg_columns = [a.eval_batch(envs) for a in self.args]
        kwarg_columns = {k: v.eval_batch(envs) for k, v in self.kwargs.items()}
        names = self._param_names
        rows: list[tuple[list[Any], dict[str, Any]] | Any] = []
        for i, env in enumerate(envs):
            args = [column[i] for column in arg_columns]
            kwargs = {k: column[i] for k, column in kwarg_columns.items()}
            error = _first_error([*args, *kwargs.values()])
            if error is not None:
                rows.append(error)
                continue
            if any(a is None for a in args):  # keyword arguments may legitimately be None (defaults)
                rows.append(None)
                continue
            try:
                args = [self._open(names[j], a, env) for j, a in enumerate(args)]
                kwargs = {k: self._open(k, v, env) for k, v in kwargs.items()}
            except Exception as exc:
                rows.append(CellError.from_exception(exc))
                continue
            rows.append((args, kwargs))
        if self.function.batch_size:
            return self._call_batched(rows)
        out: list[Any] = []
        for row in rows:
            if not isinstance(row, tuple):
                out.append(row)
                continue
            try:
                out.append(self.function.fn(*row[0], **row[1]))
            except Exception as exc:
                out.append(CellError.from_exception(exc))
        return out

    def _open(self, param: str, value: Any, env: EvalEnv) -> Any:
        if param in self._media_params and isinstance(value, str):
            return env.open_media(value, self.function.param_types[param])
        return value

    def _call_batched(self, rows: list[Any]) -> list[Any]:
        out = list(rows)
        ready = [i for i, row in enumerate(rows) if isinstance(row, tuple)]
        size = self.function.batch_size
        for start in range(0, len(ready), size):
            chunk = ready[start : start + size]
            n_args = len(rows[chunk[0]][0])
            args = [[rows[i][0][j] for i in chunk] for j in range(n_args)]
            kwargs = {k: [rows[i][1][k] for i in chunk] for k in rows[chunk[0]][1]}
            try:
                results = list(self.function.fn(*args, **kwargs))
                if len(results) != len(chunk):
                    raise ExprError(f"{self.function.name} returned {len(results)} values for {len(chunk)} rows")
            except Exception as exc:
                results = [CellError.from_exception(exc)] * len(chunk)
            for i, result in zip(chunk, results, strict=True):
                out[i] = result
        return out


class IfElse(Expr):
    """`mt.if_else(cond, then, otherwise)`."""

    def __init__(self, condition: Any, then: Any, otherwise: Any) -> None:
        self.condition, self.then, self.otherwise = as_expr(condition), as_expr(then), as_expr(otherwise)
        self.col_type = (
            self.then.col_type if not isinstance(self.then, Literal) or then is not None else self.otherwise.col_type
        )

    def __repr__(self) -> str:
        return f"if_else({self.condition!r}, {self.then!r}, {self.otherwise!r})"

    def children(self) -> Sequence[Expr]:
        return (self.condition, self.then, self.otherwise)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        conditions = self.condition.eval_batch(envs)
        thens, others = self.then.eval_batch(envs), self.otherwise.eval_batch(envs)
        return [
            c if isinstance(c, CellError) else (t if c else o)
            for c, t, o in zip(conditions, thens, others, strict=True)
        ]


class Coalesce(Expr):
    """`mt.coalesce(a, b, ...)`: the first value that is not None (errors count as None)."""

    def __init__(self, *operands: Any) -> None:
        if not operands:
            raise ExprError("coalesce() needs at least one argument")
        self.operands = [as_expr(o) for o in operands]
        self.col_type = self.operands[0].col_type

    def __repr__(self) -> str:
        return f"coalesce({', '.join(repr(o) for o in self.operands)})"

    def children(self) -> Sequence[Expr]:
        return self.operands

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        columns = [o.eval_batch(envs) for o in self.operands]
        out: list[Any] = []
        for values in zip(*columns, strict=True):
            out.append(next((v for v in values if v is not None and not isinstance(v, CellError)), None))
        return out
