"""Settings: defaults, config.toml, env vars, overrides (config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediatable.config import load_settings, parse_duration, parse_size
from mediatable.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    assert s.home == tmp_path and s.cache_size == 20 * 1024**3 and s.max_concurrent_downloads == 32
    assert s.cache_dir == tmp_path / "file_cache" and s.catalog_url == f"sqlite:///{tmp_path}/catalog.db"


def test_precedence_file_then_env_then_arguments(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'cache_size = "1GiB"\nmax_concurrent_downloads = 8\n[buckets."s3://b"]\nendpoint = "http://127.0.0.1:1"\n'
    )
    s = load_settings(tmp_path, environ={"MEDIATABLE_MAX_CONCURRENT_DOWNLOADS": "16"})
    assert s.cache_size == 1024**3 and s.max_concurrent_downloads == 16
    assert s.buckets["s3://b"]["endpoint"] == "http://127.0.0.1:1"
    s = load_settings(tmp_path, environ={}, cache_size="2GB", max_concurrent_downloads=4)
    assert s.cache_size == 2 * 1000**3 and s.max_concurrent_downloads == 4


def test_home_from_env(tmp_path: Path) -> None:
    assert load_settings(environ={"MEDIATABLE_HOME": str(tmp_path)}).home == tmp_path


@pytest.mark.parametrize(
    ("text", "expected"), [("20GiB", 20 * 1024**3), ("500 MB", 500 * 1000**2), ("1048576", 1048576), (7, 7)]
)
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


def test_durations() -> None:
    assert parse_duration("500ms") == 0.5 and parse_duration("2m") == 120 and parse_duration(3) == 3.0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MEDIATABLE_CACHE_SIZE": "lots"}, "not a size"),
        ({"MEDIATABLE_MAX_CONCURRENT_DOWNLOADS": "0"}, "at least 1"),
        ({"MEDIATABLE_CACHE_VALIDATION": "sometimes"}, "cache_validation"),
        ({"MEDIATABLE_PROGRESS": "maybe"}, "not a boolean"),
    ],
)
def test_bad_values_are_clear(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ=environ)


def test_bad_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("cache_size = [")
    with pytest.raises(ConfigError, match=r"config\.toml"):
        load_settings(tmp_path, environ={})
    (tmp_path / "config.toml").write_text("colour = 1")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings(tmp_path, environ={})
