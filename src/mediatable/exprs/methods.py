"""Which functions appear as methods/properties of a column of a given type (`t.image.width`).

The built-in function modules register themselves here with `@udf(method_of=..., is_property=...)`;
:class:`~mediatable.exprs.base.Expr` looks methods up by the expression's column type name.
"""

from __future__ import annotations

from typing import Any

_METHODS: dict[str, dict[str, tuple[Any, bool]]] = {}


def register_method(type_name: str, name: str, function: Any, is_property: bool) -> None:
    """Make `function` available as `expr.<name>` on expressions of type `type_name`."""
    _METHODS.setdefault(type_name, {})[name] = (function, is_property)


def lookup_method(type_name: str, name: str) -> tuple[Any, bool] | None:
    """The (function, is_property) registered for `type_name.name`, or None."""
    return _METHODS.get(type_name, {}).get(name)


def method_names(type_name: str) -> list[str]:
    """Sorted names of the methods registered for `type_name` (for error messages and dir())."""
    return sorted(_METHODS.get(type_name, {}))
