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


def test_provider_sections_env_wins_and_keys_stay_out_of_reprs_and_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[openai]\napi_key = "sk-file"\nmax_concurrency = 3\n[local]\nbase_url = "http://127.0.0.1:1/v1"\n'
    )
    config.chmod(0o644)
    s = load_settings(tmp_path, environ={"OPENAI_API_KEY": "sk-env", "LOCAL_API_KEY": "none-needed"})
    assert s.providers["openai"].api_key == "sk-env" and s.providers["openai"].max_concurrency == 3
    assert s.providers["local"].base_url == "http://127.0.0.1:1/v1" and s.providers["local"].api_key == "none-needed"
    assert "sk-" not in repr(s) + repr(s.providers)
    assert "holds an API key and other users can read it: chmod 600" in caplog.text
    caplog.clear()
    config.chmod(0o600)
    assert load_settings(tmp_path, environ={}).providers["openai"].api_key == "sk-file" and not caplog.text
    assert load_settings(tmp_path / "none", environ={}).providers["openai"].api_key is None


def test_bad_provider_sections(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[openai]\napi_kee = "sk-typo"\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'api_kee' in \[openai\] \(known: api_key, base_url"):
        load_settings(tmp_path, environ={})
    config.write_text("[openai]\napi_key = 12345678\n")
    with pytest.raises(ConfigError, match=r"api_key in \[openai\] must be a string") as err:
        load_settings(tmp_path, environ={})
    assert "12345678" not in str(err.value)
    config.write_text("[openai]\nmax_concurrency = 0\n")
    with pytest.raises(ConfigError, match="max_concurrency in"):
        load_settings(tmp_path, environ={})
