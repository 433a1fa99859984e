"""SQL forms of expressions whose SQL spelling differs between SQLite and PostgreSQL.

Each construct compiles per dialect so a filter pushed down to the database gives the same rows
on both backends, and the same rows as evaluating it in Python.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement


class JsonPathEquals(ColumnElement[bool]):
    """`json_value_at(column, path) == value` for a scalar `value` (str, int or float), type-exact.

    As in Python, a string never equals a number, and `true` / `false` equal 1 / 0 (`True == 1.0`).
    `negated`: `!=` — true for any other value found there (a string, an object, ...), and NULL
    (the row is not kept) where the path holds nothing or JSON null, as Python gives None there.
    """

    inherit_cache = False
    type = sa.Boolean()

    def __init__(self, column: Any, path: list[str | int], value: str | int | float, negated: bool = False) -> None:
        self.column = column
        self.path = path
        self.value = value
        self.negated = negated


@compiles(JsonPathEquals, "sqlite")
def _json_equals_sqlite(element: JsonPathEquals, compiler: Any, **kw: Any) -> str:
    path = "$" + "".join(f"[{k}]" if isinstance(k, int) else f".{json.dumps(k)}" for k in element.path)
    column = compiler.process(element.column, **kw)
    path_sql = compiler.process(sa.literal(path), **kw)
    value = compiler.process(sa.literal(element.value), **kw)
    # json_extract gives 1 / 0 for true / false, so a boolean equals exactly the numbers Python says it does.
    kinds = "('text')" if isinstance(element.value, str) else "('integer', 'real', 'true', 'false')"
    found = f"json_type({column}, {path_sql})"
    equals = f"({found} IN {kinds} AND json_extract({column}, {path_sql}) = {value})"
    return f"({found} IS NOT NULL AND {found} != 'null' AND NOT {equals})" if element.negated else equals


@compiles(JsonPathEquals, "postgresql")
def _json_equals_postgresql(element: JsonPathEquals, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    path = compiler.process(sa.literal([str(k) for k in element.path], sa.ARRAY(sa.Text)), **kw)
    found = f"(CAST({column} AS JSONB) #> {path})"
    value = compiler.process(sa.literal(json.dumps(element.value)), **kw)
    equals = f"{found} = CAST({value} AS JSONB)"
    if not isinstance(element.value, str) and element.value in (0, 1):  # jsonb's true is no number: say it
        equals += f" OR {found} = CAST('{'true' if element.value == 1 else 'false'}' AS JSONB)"
    if element.negated:
        return f"({found} IS NOT NULL AND {found} != CAST('null' AS JSONB) AND NOT ({equals}))"
    return f"({equals})"


class StrPosition(ColumnElement[int]):
    """1-based position of `needle` in `haystack` (0 when absent): SQLite `instr`, PostgreSQL `strpos`."""

    inherit_cache = False
    type = sa.Integer()

    def __init__(self, haystack: Any, needle: Any) -> None:
        self.haystack = haystack
        self.needle = needle


@compiles(StrPosition, "sqlite")
def _position_sqlite(element: StrPosition, compiler: Any, **kw: Any) -> str:
    return f"instr({compiler.process(element.haystack, **kw)}, {compiler.process(element.needle, **kw)})"


@compiles(StrPosition, "postgresql")
def _position_postgresql(element: StrPosition, compiler: Any, **kw: Any) -> str:
    return f"strpos({compiler.process(element.haystack, **kw)}, {compiler.process(element.needle, **kw)})"


def python_mod(left: Any, divisor: int) -> Any:
    """`left % divisor` with Python's sign rule (the result takes the divisor's sign), for integers."""
    return ((left % divisor) + divisor) % divisor


def python_floordiv(left: Any, divisor: int) -> Any:
    """`left // divisor` rounding toward minus infinity, as Python does, for integers."""
    return (left - python_mod(left, divisor)) / divisor
