"""Expressions over table columns: the tree users build with operators and methods, evaluated per batch.

Modules: :mod:`~mediatable.exprs.cells` (failed values, the evaluation environment),
:mod:`~mediatable.exprs.base` (:class:`Expr`, literals, operators), :mod:`~mediatable.exprs.columns`
(column references and properties), :mod:`~mediatable.exprs.calls` (function calls, conditionals),
:mod:`~mediatable.exprs.methods` (which functions are methods of which type),
:mod:`~mediatable.exprs.serialize` (stored computed columns).
"""

from mediatable.exprs.aggregates import Aggregate, has_aggregate
from mediatable.exprs.base import (
    Arithmetic,
    BoolOp,
    Compare,
    ErrorProperty,
    Expr,
    IsIn,
    IsNull,
    JsonPath,
    Literal,
    Not,
    as_expr,
)
from mediatable.exprs.calls import Coalesce, FunctionCall, IfElse
from mediatable.exprs.cells import CellError, EvalEnv, first_error
from mediatable.exprs.columns import ColumnProperty, ColumnRef

__all__ = [
    "Aggregate",
    "Arithmetic",
    "BoolOp",
    "CellError",
    "Coalesce",
    "ColumnProperty",
    "ColumnRef",
    "Compare",
    "ErrorProperty",
    "EvalEnv",
    "Expr",
    "FunctionCall",
    "IfElse",
    "IsIn",
    "IsNull",
    "JsonPath",
    "Literal",
    "Not",
    "as_expr",
    "first_error",
    "has_aggregate",
]
