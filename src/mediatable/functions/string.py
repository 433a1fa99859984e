"""Built-in string functions, also methods of String expressions: `t.label.upper()`, `t.name.len()`.

Each one runs Python's own `str` method of the same name (results match Python exactly), so the
docs of `str` apply; `contains` is `in`, `len` is `len()`, `format` fills a template.

Examples:
    >>> upper("cat"), len("cat"), split("a,b", ",")
    ('CAT', 3, ['a', 'b'])
"""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa

from mediatable import types as ts
from mediatable.exprs import sql
from mediatable.functions.udf import udf


def _head(s: Any, n: Any) -> Any:
    return sa.func.substr(s, 1, n)


def _tail(s: Any, n: Any) -> Any:
    return sa.func.substr(s, sa.func.length(s) - n + 1)  # n longer than s: a start <= 0, never equal


@udf(light=True, method_of=ts.String, sql=lambda s: sa.func.length(s))
def len(s: str) -> int:
    """Number of characters (code points).

    Examples:
        >>> len("café")
        4
    """
    return builtins.len(s)  # plain `len` is this function


@udf(light=True, method_of=ts.String, sql=lambda s: sa.func.lower(s))
def lower(s: str) -> str:
    """Lower-case copy.

    Examples:
        >>> lower("Cat")
        'cat'
    """
    return s.lower()


@udf(light=True, method_of=ts.String, sql=lambda s: sa.func.upper(s))
def upper(s: str) -> str:
    """Upper-case copy.

    Examples:
        >>> upper("Cat")
        'CAT'
    """
    return s.upper()


@udf(light=True, method_of=ts.String)
def strip(s: str, chars: str | None = None) -> str:
    """Copy without leading and trailing whitespace (or without the characters in `chars`).

    Examples:
        >>> strip("  cat ")
        'cat'
        >>> strip("--cat--", "-")
        'cat'
    """
    return s.strip(chars)


@udf(light=True, method_of=ts.String, sql=lambda s, sub: sql.StrPosition(s, sub) > 0)
def contains(s: str, substring: str) -> bool:
    """Whether `substring` occurs in the string (case-sensitive).

    Examples:
        >>> contains("wildcat", "cat")
        True
    """
    return substring in s


@udf(light=True, method_of=ts.String, sql=lambda s, prefix: _head(s, sa.func.length(prefix)) == prefix)
def startswith(s: str, prefix: str) -> bool:
    """Whether the string starts with `prefix`.

    Examples:
        >>> startswith("s3://bucket/a.jpg", "s3://")
        True
    """
    return s.startswith(prefix)


@udf(
    light=True,
    method_of=ts.String,
    sql=lambda s, suffix: _tail(s, sa.func.length(suffix)) == suffix,
)
def endswith(s: str, suffix: str) -> bool:
    """Whether the string ends with `suffix`.

    Examples:
        >>> endswith("a.jpg", ".png")
        False
    """
    return s.endswith(suffix)


@udf(light=True, method_of=ts.String)
def replace(s: str, old: str, new: str, count: int = -1) -> str:
    """Copy with occurrences of `old` replaced by `new` (the first `count` only, if given).

    Examples:
        >>> replace("a-b-c", "-", "+")
        'a+b+c'
        >>> replace("a-b-c", "-", "+", 1)
        'a+b-c'
    """
    return s.replace(old, new, count)


@udf(light=True, method_of=ts.String)
def split(s: str, sep: str | None = None, maxsplit: int = -1) -> list[str]:
    """The parts between `sep` (default: runs of whitespace), as a Json list.

    Examples:
        >>> split("a b  c")
        ['a', 'b', 'c']
        >>> split("a,b,c", ",", 1)
        ['a', 'b,c']
    """
    return s.split(sep, maxsplit)


@udf(light=True, method_of=ts.String)
def format(template: str, **values: Any) -> str:
    """Fill `template`'s `{name}` fields with keyword arguments, as `str.format` does.

    In a table, pass columns as keywords: `string.format('{label}: {w}px', label=t.label, w=t.width)`,
    or call it on a String column holding templates: `t.template.format(name=t.name)`.

    Examples:
        >>> format("{label} is {w}px wide", label="cat", w=640)
        'cat is 640px wide'
    """
    return template.format(**values)
