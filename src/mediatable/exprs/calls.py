"""Function calls (`t.image.rotate(90)`, UDFs) and conditionals (`if_else`, `coalesce`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mediatable.errors import ExprError
from mediatable.exprs.base import Expr, Literal, as_expr
from mediatable.exprs.cells import CellError, EvalEnv, first_error


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

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        if self.function.sql is None or self.kwargs:
            return None
        args = [a.to_sql(resolve) for a in self.args]
        return None if any(a is None for a in args) else self.function.sql(*args)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        if not envs:
            return []
        return envs[0].run_call(self, envs, self.eval_here)  # the executor decides where: threads or processes

    def eval_here(self, envs: Sequence[EvalEnv]) -> list[Any]:
        """Evaluate the arguments and call the function in this thread."""
        arg_columns = [a.eval_batch(envs) for a in self.args]
        kwarg_columns = {k: v.eval_batch(envs) for k, v in self.kwargs.items()}
        names = self._param_names
        rows: list[tuple[list[Any], dict[str, Any]] | Any] = []
        for i, env in enumerate(envs):
            args = [column[i] for column in arg_columns]
            kwargs = {k: column[i] for k, column in kwarg_columns.items()}
            error = first_error([*args, *kwargs.values()])
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
            return env.open_media(value, self.function.param_types[param], self.function.ranged)
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
