"""Expressions to JSON and back, so computed columns outlive the process that defined them.

Columns are stored by name, built-in and importable functions by `module:qualname`; functions
defined in `__main__` (scripts, notebooks) are stored by value with cloudpickle.
"""

from __future__ import annotations

import base64
import importlib
from collections.abc import Callable
from typing import Any

import cloudpickle

from mediatable.errors import ExprError
from mediatable.exprs import base, calls, columns
from mediatable.exprs.presign import PresignedUrl


def to_dict(expr: base.Expr) -> dict[str, Any]:
    """A JSON-able description of `expr`."""
    if isinstance(expr, base.Literal):
        return {"k": "lit", "v": _literal_value(expr.value)}
    if isinstance(expr, columns.ColumnRef):
        return {"k": "col", "name": expr.column.name}
    if isinstance(expr, columns.ColumnProperty):
        return {"k": "prop", "ref": to_dict(expr.ref), "prop": expr.prop}
    if isinstance(expr, base.Arithmetic | base.Compare):
        kind = "arith" if isinstance(expr, base.Arithmetic) else "cmp"
        return {"k": kind, "op": expr.op, "l": to_dict(expr.left), "r": to_dict(expr.right)}
    if isinstance(expr, base.BoolOp):
        return {"k": "bool", "op": expr.op, "args": [to_dict(o) for o in expr.operands]}
    if isinstance(expr, base.Not | base.IsNull):
        return {"k": "not" if isinstance(expr, base.Not) else "isnull", "arg": to_dict(expr.operand)}
    if isinstance(expr, base.ErrorProperty):
        return {"k": "errprop", "arg": to_dict(expr.operand), "prop": expr.prop}
    if isinstance(expr, base.IsIn):
        return {"k": "isin", "arg": to_dict(expr.operand), "values": expr.values}
    if isinstance(expr, base.JsonPath):
        return {"k": "json", "base": to_dict(expr.base), "key": expr.key}
    if isinstance(expr, calls.IfElse):
        return {"k": "if", "args": [to_dict(e) for e in expr.children()]}
    if isinstance(expr, calls.Coalesce):
        return {"k": "coalesce", "args": [to_dict(e) for e in expr.operands]}
    if isinstance(expr, PresignedUrl):
        return {"k": "presign", "arg": to_dict(expr.source), "expires": expr.expiration_seconds}
    if isinstance(expr, calls.FunctionCall):
        return {
            "k": "call",
            "fn": function_ref(expr.function),
            "args": [to_dict(a) for a in expr.args],
            "kwargs": {k: to_dict(v) for k, v in expr.kwargs.items()},
        }
    raise ExprError(f"cannot store expression {expr!r} ({type(expr).__name__})")


def from_dict(data: dict[str, Any], resolve_column: Callable[[str], Any]) -> base.Expr:
    """Rebuild an expression; `resolve_column(name)` returns the catalog column of that name."""

    def build(d: dict[str, Any]) -> base.Expr:
        return from_dict(d, resolve_column)

    kind = data["k"]
    if kind == "lit":
        value = data["v"]
        return base.Literal(tuple(value["tuple"]) if isinstance(value, dict) and "tuple" in value else value)
    if kind == "col":
        return columns.ColumnRef(resolve_column(data["name"]))
    if kind == "prop":
        ref = build(data["ref"])
        assert isinstance(ref, columns.ColumnRef)
        return columns.ColumnProperty(ref, data["prop"])
    if kind == "arith":
        return base.Arithmetic(data["op"], build(data["l"]), build(data["r"]))
    if kind == "cmp":
        return base.Compare(data["op"], build(data["l"]), build(data["r"]))
    if kind == "bool":
        return base.BoolOp(data["op"], [build(a) for a in data["args"]])
    if kind == "not":
        return base.Not(build(data["arg"]))
    if kind == "isnull":
        return base.IsNull(build(data["arg"]))
    if kind == "errprop":
        return base.ErrorProperty(build(data["arg"]), data["prop"])
    if kind == "isin":
        return base.IsIn(build(data["arg"]), data["values"])
    if kind == "json":
        return base.JsonPath(build(data["base"]), data["key"])
    if kind == "if":
        return calls.IfElse(*(build(a) for a in data["args"]))
    if kind == "coalesce":
        return calls.Coalesce(*(build(a) for a in data["args"]))
    if kind == "presign":
        return PresignedUrl(build(data["arg"]), data["expires"])
    if kind == "call":
        function = load_function(data["fn"])
        return calls.FunctionCall(
            function, [build(a) for a in data["args"]], {k: build(v) for k, v in data["kwargs"].items()}
        )
    raise ExprError(f"unknown stored expression kind {kind!r}")


def function_ref(function: Any) -> dict[str, Any]:
    """How to find `function` again: by import path, or by value for functions an import would not find
    (those of `__main__`, local ones, and ones defined in code run by `exec`, e.g. a doctest)."""
    module, qualname = function.fn.__module__, function.fn.__qualname__
    if module != "__main__" and "<locals>" not in qualname and _imports_as(module, qualname, function):
        return {"module": module, "qualname": qualname}
    return {"pickle": base64.b64encode(cloudpickle.dumps(function)).decode("ascii"), "name": function.name}


def _imports_as(module: str, qualname: str, function: Any) -> bool:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return False
    return obj is function


def load_function(ref: dict[str, Any]) -> Any:
    """Inverse of :func:`function_ref`."""
    if "pickle" in ref:
        try:
            return cloudpickle.loads(base64.b64decode(ref["pickle"]))
        except Exception as exc:
            raise ExprError(f"cannot load stored function {ref.get('name')}: {exc}") from exc
    try:
        obj: Any = importlib.import_module(ref["module"])
        for part in ref["qualname"].split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ExprError(f"cannot import function {ref['module']}.{ref['qualname']}: {exc}") from exc
    return obj


def _literal_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"tuple": [_literal_value(v) for v in value]}
    return value
