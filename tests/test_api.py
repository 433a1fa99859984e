"""The public surface: one sorted `__all__` listing exactly the public names; the error tree."""

from __future__ import annotations

import types

import mediatable as mt


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(mt).items()
        if not name.startswith("_") and not (isinstance(value, types.ModuleType) and name != "functions")
    }
    assert set(mt.__all__) == public
    assert mt.__all__ == sorted(mt.__all__)


def test_every_error_derives_from_the_root() -> None:
    errors = [getattr(mt, n) for n in mt.__all__ if isinstance(getattr(mt, n), type)]
    errors = [e for e in errors if issubclass(e, BaseException)]
    assert len(errors) > 15
    assert all(issubclass(e, mt.Error) for e in errors)
    assert issubclass(mt.MediaNotFound, FileNotFoundError) and issubclass(mt.DataError, ValueError)
