"""Expressions over table columns (see :mod:`mediatable.exprs.base`)."""

from mediatable.exprs.base import (
    CellError,
    Coalesce,
    ColumnProperty,
    ColumnRef,
    Expr,
    FunctionCall,
    IfElse,
    Literal,
    as_expr,
)

__all__ = [
    "CellError",
    "Coalesce",
    "ColumnProperty",
    "ColumnRef",
    "Expr",
    "FunctionCall",
    "IfElse",
    "Literal",
    "as_expr",
]
