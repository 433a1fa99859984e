"""Shared fixtures: a clean environment and a private home for every test.

Servers (HTTP, S3, GCS, Azure, PostgreSQL) are real processes on 127.0.0.1, defined in
`tests/servers/` and loaded as plugins below; each starts once per session and stops at teardown.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import mediatable as mt

pytest_plugins = [
    "servers.http",
    "servers.cloud",
    "servers.postgres",
    "servers.pgvector",
    "servers.openai_api",
    "servers.ray_cluster",
]

_CLEARED_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_", "MEDIATABLE_", "STORAGE_EMULATOR", "OPENAI_")


# The longest files (seconds of a serial run on 2 cores) run first: with `-n 2 --dist loadfile` each file goes
# to one worker as a whole, so a long file started last would leave the other worker idle until it ends.
_LONGEST_FILES = ("test_ray_executor.py", "test_pytorch.py", "test_schema_changes.py", "test_cache_stress.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of `_LONGEST_FILES` first, in that order; the rest keep their order (a stable sort)."""
    rank = {name: position for position, name in enumerate(_LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Remove the user's cloud and mediatable settings; give the test its own HOME and MEDIATABLE_HOME."""
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/.aws, ~/.config/gcloud of the real user
    monkeypatch.setenv("MEDIATABLE_HOME", str(tmp_path / "mthome"))
    yield tmp_path / "mthome"
    while mt.api._current:  # close what mt.init() opened: no connection outlives its test
        mt.api._current.pop().close()


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Files made through `tempfile` (clips, audio chunks) go to the test's own folder, which is returned.

    Modules whose functions write such files use it for every test:
    `pytestmark = pytest.mark.usefixtures("private_tempdir")`.
    """
    folder = tmp_path / "tempfiles"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def db_home(clean_env: Path, db_url: str) -> Path:
    """An initialized session on a fresh catalog: an SQLite file, then a PostgreSQL database (`db_url`)."""
    mt.init(home=clean_env, db_url=db_url, quiet=True)
    return clean_env
