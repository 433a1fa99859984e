"""Tests of the scalar built-ins (mediatable.functions.string, .json, .math) and of the package surface."""

from __future__ import annotations

import doctest
from types import ModuleType
from typing import Any

import pytest

import mediagen
import mediatable.functions
from mediatable import types as ts
from mediatable.exprs import Literal
from mediatable.exprs.methods import lookup_method
from mediatable.functions import json, math, string
from mediatable.functions.udf import Function


@pytest.mark.parametrize(
    ("function", "args", "expected"),
    [
        (string.len, ("café",), 4),
        (string.lower, ("CaT",), "cat"),
        (string.upper, ("CaT",), "CAT"),
        (string.strip, ("  cat \n",), "cat"),
        (string.strip, ("xxcatxx", "x"), "cat"),
        (string.contains, ("wildcat", "cat"), True),
        (string.contains, ("wildcat", "Cat"), False),
        (string.startswith, ("s3://b/k", "s3://"), True),
        (string.endswith, ("a.jpg", ".jpg"), True),
        (string.replace, ("a-b-c", "-", "+"), "a+b+c"),
        (string.replace, ("a-b-c", "-", "+", 1), "a+b-c"),
        (string.split, ("a b\tc",), ["a", "b", "c"]),
        (string.split, ("a,b,c", ",", 1), ["a", "b,c"]),
    ],
)
def test_string(function: Function, args: tuple, expected: Any) -> None:
    assert function(*args) == expected


def test_string_format() -> None:
    assert string.format("{label}: {w}x{h}", label="cat", w=640, h=480) == "cat: 640x480"
    with pytest.raises(KeyError):
        string.format("{missing}")


@pytest.mark.parametrize(
    ("obj", "path", "expected"),
    [
        ({"a": {"b": [10, 20]}}, "a.b.1", 20),
        ({"a": {"b": [10, 20]}}, "a.b.-1", 20),
        ({"a": {"b": [10, 20]}}, "a.b.2", None),
        ({"a": {"b": [10, 20]}}, "a.x", None),
        ({"a": 1}, "a.b", None),
        ({"a.b": 1}, ["a.b"], 1),
        ([5, 6], 1, 6),
        ({"1": "key"}, 1, "key"),
    ],
)
def test_json_get(obj: Any, path: Any, expected: Any) -> None:
    assert json.get(obj, path) == expected


def test_json_get_default_keys_len() -> None:
    assert json.get({"a": 1}, "b", default="none") == "none"
    assert json.keys({"b": 1, "a": 2}) == ["b", "a"]
    assert json.keys([1, 2]) == []
    assert [json.len(v) for v in ([1, 2, 3], {"a": 1}, "abcd", 7.5)] == [3, 1, 4, 1]


@pytest.mark.parametrize(
    ("function", "args", "expected"),
    [
        (math.round, (2.675, 2), 2.67),  # binary floating point: 2.675 is stored as 2.67499...
        (math.round, (2.5,), 2.0),
        (math.round, (1234, -2), 1200),
        (math.abs, (-3,), 3),
        (math.abs, (-2.5,), 2.5),
        (math.floor, (-2.1,), -3),
        (math.ceil, (2.1,), 3),
        (math.clip, (12, 0, 10), 10),
        (math.clip, (-1.5, 0.0), 0.0),
        (math.clip, (5, None, 3), 3),
        (math.clip, (5, None, None), 5),
    ],
)
def test_math(function: Function, args: tuple, expected: Any) -> None:
    result = function(*args)
    assert result == expected and type(result) is type(expected)


def test_clip_rejects_crossed_bounds() -> None:
    with pytest.raises(ValueError, match="lower"):
        math.clip(1, 5, 2)


# -- registration and result types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "module", "names"),
    [
        (
            "String",
            string,
            ["len", "lower", "upper", "strip", "contains", "startswith", "endswith", "replace", "split", "format"],
        ),
        ("Json", json, ["keys", "get", "len"]),
        ("Float", math, ["round", "abs", "floor", "ceil", "clip"]),
    ],
)
def test_registered_as_methods(type_name: str, module: ModuleType, names: list[str]) -> None:
    for name in names:
        registered, is_property = lookup_method(type_name, name)
        assert registered is getattr(module, name) and not is_property


@pytest.mark.parametrize(
    ("name", "int_type", "float_type"),
    [
        ("round", ts.Int, ts.Float),
        ("abs", ts.Int, ts.Float),
        ("floor", ts.Int, ts.Int),
        ("ceil", ts.Int, ts.Int),
        ("clip", ts.Int, ts.Float),
    ],
)
def test_number_methods_keep_the_column_type(name: str, int_type: ts.ColumnType, float_type: ts.ColumnType) -> None:
    count, score = mediagen.column("count", ts.Int), mediagen.column("score", ts.Float)
    assert getattr(count, name)().col_type == int_type
    assert getattr(score, name)().col_type == float_type


def test_result_types() -> None:
    assert [f.return_type for f in (string.len, string.contains, string.split, string.format)] == [
        ts.Int,
        ts.Bool,
        ts.Json,
        ts.String,
    ]
    assert [f.return_type for f in (json.keys, json.get, json.len)] == [ts.Json, ts.Json, ts.Int]


# -- expressions ----------------------------------------------------------------------------------


def test_expressions_evaluate_per_row() -> None:
    label, meta = mediagen.column("label", ts.String), mediagen.column("meta", ts.Json)
    rows = [
        {"label": " Cat ", "meta": {"exif": {"Make": "Canon"}}, "score": 2.26},
        {"label": None, "meta": {}, "score": -1.0},
    ]
    assert mediagen.evaluate(label.strip().lower(), rows) == ["cat", None]
    assert mediagen.evaluate(meta.get("exif.Make", default="?"), rows) == ["Canon", "?"]
    assert mediagen.evaluate(mediagen.column("score", ts.Float).round(1), rows) == [2.3, -1.0]
    summary = string.format("{who} by {make}", who=label.strip(), make=meta.get("exif.Make"))
    assert summary.col_type == ts.String
    assert mediagen.evaluate(summary, rows[:1]) == ["Cat by Canon"]


def test_literal_arguments_build_calls() -> None:
    call = string.upper(Literal("abc"))
    assert call.col_type == ts.String
    assert mediagen.evaluate(call, [{}]) == ["ABC"]


# -- the package surface ----------------------------------------------------------------------------


def test_package_exports_every_module() -> None:
    names = ["aggregates", "ai", "audio", "document", "image", "json", "math", "net", "string", "video"]
    for name in names:
        assert isinstance(getattr(mediatable.functions, name), ModuleType)
    ai = set(mediatable.functions.ai.__all__)  # the model functions are also reachable directly: mt.functions.ocr
    aggregates = {"count", "sum", "mean", "min", "max"}  # mt.functions.count(...) in group_by queries
    assert set(mediatable.functions.__all__) == {*names, *ai, *aggregates, "Function", "presigned_url", "udf"}


@pytest.mark.parametrize("module", [mediatable.functions, string, json, math], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0
