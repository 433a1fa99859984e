"""Column references (`t.label`) and column properties (`t.image.localpath`, `t.width.errormsg`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mediatable import types as ts
from mediatable.exprs.base import ErrorProperty, Expr
from mediatable.exprs.cells import CellError, EvalEnv


class ColumnRef(Expr):
    """A column of a table or view (`t.label`, `t['label']`), or of a table's alias in a join (`alias`).

    Media columns have extra properties: `.localpath` (cached local file), `.fileurl` (stored URL);
    `.errortype` and `.errormsg` say why a computed column's cell failed, or why a media file cannot
    be fetched.
    """

    def __init__(self, column: Any, alias: str | None = None) -> None:
        self.column = column
        self.alias = alias
        self.col_type = column.col_type

    def __repr__(self) -> str:
        return f"{self.alias or self.column.table_name}.{self.column.name}"

    def with_columns(self, replace: Callable[[Any], Expr]) -> Expr:
        return replace(self)

    def default_name(self) -> str:
        return str(self.column.name)

    def eval_batch(self, envs: Sequence[EvalEnv]) -> list[Any]:
        out = []
        for env in envs:
            value = env.column_value(self.column)
            if isinstance(value, CellError):  # a value computed from a failed cell names that cell
                value = value.reworded(f"upstream column {self.column.name!r} failed: {value.errormsg}")
            out.append(value)
        return out

    def to_sql(self, resolve: Callable[[Any], Any]) -> Any:
        return None if self.col_type.is_media else resolve(self.column)

    def sql_value(self, resolve: Callable[[Any], Any]) -> Any:
        return resolve(self.column)

    def __getattr__(self, name: str) -> Any:
        if name in ("errortype", "errormsg"):
            if self.col_type.is_media and not self.column.is_computed:  # why its file cannot be fetched
                return ErrorProperty(ColumnProperty(self, "localpath"), name, subject=self)
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
