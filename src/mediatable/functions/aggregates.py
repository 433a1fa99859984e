"""Aggregate functions for `group_by()` queries: `count`, `sum`, `mean`, `min`, `max`.

Examples:
    >>> import mediatable as mt, tempfile
    >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
    >>> t = mt.create_table('pets', {'kind': mt.String, 'age': mt.Int})
    Created table 'pets'.
    >>> _ = t.insert([{'kind': 'cat', 'age': 3}, {'kind': 'cat', 'age': 5}, {'kind': 'dog', 'age': 4}], quiet=True)
    >>> f = mt.functions
    >>> rows = t.group_by(t.kind).select(t.kind, n=f.count(), avg=f.mean(t.age), oldest=f.max(t.age)).collect()
    >>> list(rows)
    [{'kind': 'cat', 'n': 2, 'avg': 4.0, 'oldest': 5}, {'kind': 'dog', 'n': 1, 'avg': 4.0, 'oldest': 4}]
"""

from __future__ import annotations

from typing import Any

from mediatable.exprs import as_expr
from mediatable.exprs.aggregates import Aggregate


def count(value: Any = None) -> Aggregate:
    """Number of rows in the group (`count()`), or of rows where `value` is not None."""
    return Aggregate("count", None if value is None else as_expr(value))


def sum(value: Any) -> Aggregate:
    """Sum of the non-None values (None when there are none)."""
    return Aggregate("sum", as_expr(value))


def mean(value: Any) -> Aggregate:
    """Average of the non-None values, as a float (None when there are none)."""
    return Aggregate("mean", as_expr(value))


def min(value: Any) -> Aggregate:
    """Smallest non-None value."""
    return Aggregate("min", as_expr(value))


def max(value: Any) -> Aggregate:
    """Largest non-None value."""
    return Aggregate("max", as_expr(value))
