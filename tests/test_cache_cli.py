"""The `mediatable cache` CLI (info, prune, clear), in process and as a subprocess, over a real file cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mediatable.cli import main
from mediatable.io.cache import FileCache
from servers.http import FaultServer
from test_cache import KB, _put_many, _settings


@pytest.fixture
def home(clean_env: Path) -> Path:
    return clean_env


def test_cli_info_prune_clear(http_server: FaultServer, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    objects = _put_many(http_server, "cli", 4, 10 * KB)
    with FileCache(_settings(home)) as file_cache, file_cache.lease() as lease:
        for url in objects:
            lease.get(url)
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"cache:      {home / 'file_cache'}" in out and "entries:    4" in out and "40.0 KiB" in out
    assert main(["cache", "prune", "--max-size", "20KiB"]) == 0
    assert "removed 2 files (20.0 KiB)" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 2 files" in out and "entries:    0" in out
    with pytest.raises(SystemExit) as usage:
        main(["cache", "prune", "--max-size", "lots"])
    assert usage.value.code == 2


def test_cli_as_a_subprocess(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mediatable.cli", "cache", "info"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MEDIATABLE_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    assert f"cache:      {home / 'file_cache'}" in done.stdout and "entries:    0" in done.stdout
