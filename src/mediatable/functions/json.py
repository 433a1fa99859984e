"""Built-in Json functions, also methods of Json expressions: `t.meta.get('exif.Make')`, `t.meta.keys()`.

Examples:
    >>> get({"a": {"b": [10, 20]}}, "a.b.1")
    20
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from mediatable import types as ts
from mediatable.functions.udf import udf


@udf(light=True, method_of=ts.Json)
def keys(obj: dict[str, Any]) -> list[str]:
    """The keys of a Json object, in their stored order (an empty list for non-objects).

    Examples:
        >>> keys({"b": 1, "a": 2})
        ['b', 'a']
    """
    return list(obj) if isinstance(obj, dict) else []


@udf(light=True, method_of=ts.Json, returns=ts.Json)
def get(obj: Any, path: str | int | Sequence[str | int], default: Any = None) -> Any:
    """The value at `path`, or `default` when any step is missing.

    Args:
        obj: a Json value.
        path: keys and list indexes separated by dots (`'a.b.0'`), a single key or index, or a
            list of steps (`['a.b', 0]` for keys that contain dots). Negative indexes count from the end.
        default: returned when a key or index does not exist.

    Examples:
        >>> get({"a": [{"b": 1}]}, "a.0.b")
        1
        >>> get({"a": 1}, "x.y", default=0)
        0
        >>> get({"a.b": 2}, ["a.b"])
        2
    """
    steps: Sequence[str | int]
    if isinstance(path, str):
        steps = path.split(".")
    elif isinstance(path, int):
        steps = [path]
    else:
        steps = path
    value = obj
    for step in steps:
        if isinstance(value, dict):
            if str(step) not in value:
                return default
            value = value[str(step)]
        elif isinstance(value, list):
            try:
                value = value[int(step)]
            except (ValueError, IndexError):
                return default
        else:
            return default
    return value


@udf(light=True, method_of=ts.Json)
def len(obj: Any) -> int:
    """Number of items of a list, keys of an object, or characters of a string; 1 for a number.

    Examples:
        >>> len([1, 2, 3]), len({"a": 1}), len(7)
        (3, 1, 1)
    """
    return builtins.len(obj) if isinstance(obj, list | dict | str) else 1
