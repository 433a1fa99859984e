"""`mediatable demo` end to end, twice, offline: every status line of the recipe, then a run served by the cache."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import mediatable
from servers.cloud import free_port

SRC = str(Path(mediatable.__file__).resolve().parents[1])

FIRST_RUN = [
    "Created directory 'cloud_demo'.",
    "== Load images from HTTP URLs",
    "Created table 'images'.",
    "Inserted 3 rows with 0 errors.",
    "3 rows inserted, 6 values computed.",
    "== Load videos from S3",
    "Created table 'videos'.",
    "Inserted 2 rows with 0 errors.",
    "2 rows inserted, 4 values computed.",
    "== Add computed columns on remote media",
    "Added 3 column values with 0 errors.",
    "Added 3 column values with 0 errors.",
    "3 rows updated, 6 values computed.",
    "Added 2 column values with 0 errors.",
    "== Extract frames from videos",
    "Created view 'frames' with 5 rows.",
    "Added 5 column values with 0 errors.",
    "== Generate presigned URLs for serving media",
    "Added 2 column values with 0 errors.",
    "== Upload generated media to S3",
    "Added 3 column values with 0 errors.",
    "== Import from CSV",
    "Created table 'from_csv'.",
    "Inserted 3 rows with 0 errors.",
    "Added 3 column values with 0 errors.",
    "== Results",
    "== File cache",
]


def run_demo(home: Path, port: int) -> list[str]:
    """`mediatable demo` in a child process, in a network namespace of its own when we may make one."""
    command = [sys.executable, "-m", "mediatable.cli", "--home", str(home), "demo", "--port", str(port)]
    if os.geteuid() == 0 and shutil.which("unshare"):
        command = ["unshare", "-n", "sh", "-c", "ip link set lo up && exec " + shlex.join(command)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIATABLE_"))}
    env["PYTHONPATH"] = SRC
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=home.parent)
    assert done.returncode == 0, f"demo failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return [line.rstrip() for line in done.stdout.splitlines()]


def in_order(expected: list[str], lines: list[str]) -> None:
    position = 0
    for want in expected:
        try:
            position = lines.index(want, position) + 1
        except ValueError:
            pytest.fail(f"missing (in order) {want!r} in the demo's output:\n" + "\n".join(lines))


def test_demo_runs_the_recipe_offline_and_the_second_run_comes_from_the_cache(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    first = run_demo(home, port)
    assert first[0].startswith("Serving 3 images at http://127.0.0.1:") and f":{port}/" in first[0]
    assert any(line.startswith("Connected to mediatable catalog at: sqlite:///") for line in first)
    in_order(FIRST_RUN, first)
    table = first[first.index("== Results") + 1 :]
    assert table[0].split() == ["label", "width", "height", "thumb"]
    assert [row.split()[:3] for row in table[2:5]] == [
        ["cat", "640", "480"],
        ["dog", "800", "600"],
        ["bird", "320", "240"],
    ]
    fetched = [line for line in first if line.startswith("GET http://127.0.0.1:")]
    assert len(fetched) == 1 and "/mediatable-demo/videos/" in fetched[0] and "-> HTTP 200, " in fetched[0]
    assert "X-Amz-Signature" in first[first.index(fetched[0]) + 1]
    assert any(line.startswith("3 objects in s3://mediatable-demo/thumbnails/") for line in first)
    assert all(row.split()[3].startswith("s3://mediatable-demo/thumbnails/") for row in table[2:5])
    assert first[-1].startswith("This run downloaded 5 files (")  # 3 images over HTTP, 2 videos from S3

    second = run_demo(home, port)
    in_order([line for line in FIRST_RUN if line != "Created directory 'cloud_demo'."], second)
    assert second[-1].startswith("This run downloaded nothing: all ") and second[-1].endswith("came from the cache.")
    # the servers are gone: the web server's port is free again
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
