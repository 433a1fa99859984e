"""Warming the cache ahead of a job: `FileCache.warm`, `t.prefetch(...)`, `mediatable cache warm` (io/cache/warm.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mediatable as mt
from mediatable.cli import main
from mediatable.config import load_settings
from mediatable.io.cache import FileCache
from servers.http import FaultServer

KB = 1024


def _objects(server: FaultServer, prefix: str, count: int, size: int) -> list[str]:
    return [server.put(f"{prefix}/{i}.mp4", os.urandom(size)) for i in range(count)]


def test_warm_downloads_what_fits_and_reports_the_rest(http_server: FaultServer, clean_env: Path) -> None:
    urls = _objects(http_server, "warm", 5, 100 * KB)
    missing = http_server.url("warm/missing.mp4")
    settings = load_settings(clean_env, environ={}, cache_size=350 * KB, retry_backoff=0.01, progress=False)
    with FileCache(settings) as cache:
        warmed = cache.warm([*urls, urls[0], missing])
        assert (warmed.files, warmed.already_cached, warmed.not_fitting) == (3, 0, 2)
        assert warmed.bytes == warmed.downloaded_bytes == 300 * KB and warmed.not_fitting_bytes == 200 * KB
        assert list(warmed.failed) == [missing] and "not found" in warmed.failed[missing]
        text = str(warmed)
        assert "3 files in the cache (300.0 KiB" in text and "2 files (200.0 KiB) did not fit" in text
        assert "1 failed: " + missing in text
        assert http_server.count() == 3  # the GETs of what fits: the rest were only sized (HEAD)
        assert http_server.count(method="HEAD") == 6
        http_server.reset()
        again = cache.warm(urls[:3])
        assert (again.files, again.already_cached, again.downloaded_bytes) == (3, 3, 0)
        assert http_server.count(method=None) == 0  # sizes of cached objects come from the index


def test_table_prefetch_and_the_cli(
    http_server: FaultServer, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = _objects(http_server, "prefetch", 4, 50 * KB)
    mt.init(home=clean_env, quiet=True, progress=False)
    t = mt.create_table("clips", {"name": mt.String, "video": mt.Video, "poster": mt.Image})
    t.insert([{"name": f"c{i}", "video": url, "poster": None} for i, url in enumerate(urls)], quiet=True)
    warmed = t.prefetch(t.video, where=t.name == "c1")
    assert (warmed.files, warmed.bytes) == (1, 50 * KB)
    assert http_server.count() == 1
    with pytest.raises(mt.ExprError, match="media columns"):
        t.prefetch(t.name)
    mt.api._current.pop().close()
    capsys.readouterr()
    warm = ["--home", str(clean_env), "cache", "warm", "clips", "--column", "video"]
    assert main([*warm, "--where", "name != 'c3'"]) == 0
    out = capsys.readouterr().out
    assert "3 files in the cache (150.0 KiB, 100.0 KiB downloaded now, 1 already there)" in out
    assert http_server.count() == 3
    assert main([*warm, "--where", "name ~ 1"]) == 1
    assert "cannot read the condition" in capsys.readouterr().err
