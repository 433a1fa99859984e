"""A real Ray head on 127.0.0.1 for the whole test session (`ray start --head --block`).

Started once (about half a minute here, ~520 MB of fixed processes) and shared by every Ray test.
Its processes run in their own process group, which is ended at teardown. Ray workers get this
checkout's `src` and `tests` on PYTHONPATH (they import mediatable and the tests' UDFs), and the
variables that keep Ray offline (`RAY_USAGE_STATS_ENABLED=0`, `RAY_AUTH_MODE=disabled`); the driver
side gets the same two variables.

The head runs with gRPC's fork handlers off (:data:`HEAD_ENV`). Its Ray Client server forks the
server of each new client (`subprocess.Popen` with a `preexec_fn`) while its own gRPC threads are
busy; with the handlers on, they run in the child before its exec and can abort it (gRPC's
`ev_epoll1_linux.cc: Check failed: next_worker->state == KICKED`, ray-project/ray#63202): the
client then fails with `Starting Ray client server failed`. Here under load that was 4 of 16
connections; with the handlers off, 0 of 16. gRPC documents the switch for processes that exec
right after they fork, as the client server does (Ray still turns fork support on for workers
whose job asks for it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mediatable.demo.servers import scoped_env
from servers.cloud import free_port

ROOT = Path(__file__).resolve().parents[2]
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
HEAD_ENV = {**RAY_ENV, "GRPC_ENABLE_FORK_SUPPORT": "false"}  # see the module docstring
_START_TIMEOUT = 180.0
_NODE_TIMEOUT = 60.0  # seconds for a second node to join or leave
CPUS = 2


@dataclasses.dataclass
class RayHead:
    """A running Ray head.

    Attributes:
        address: the GCS address `127.0.0.1:<port>` (what `RAY_ADDRESS` takes for `executor='ray'`).
        client_address: the head's Ray Client server, `ray://127.0.0.1:<port>` (`executor='ray://...'`).
        cpus: CPUs the head offers (= Ray workers that run at once).
        pythonpath: what the head's workers have on PYTHONPATH (drivers started by tests use it too).
    """

    address: str
    client_address: str
    cpus: int
    pythonpath: str
    process: subprocess.Popen[bytes] = dataclasses.field(repr=False)
    log_path: Path = dataclasses.field(repr=False)

    def driver_env(self) -> dict[str, str]:
        """The environment of a driver process a test starts: this one plus Ray's offline variables."""
        return {**os.environ, **RAY_ENV, "PYTHONPATH": self.pythonpath, "RAY_ADDRESS": self.address}

    def client_server_logs(self, limit: int = 4000) -> str:
        """The last `limit` characters of each log of the head's Ray Client servers (the proxy and the
        per-client servers it starts), for a failure message: they are removed with the head."""
        logs = sorted((self.log_path.parent / "session_latest" / "logs").glob("ray_client_server*"))
        return "".join(f"\n--- {log.name}:\n{log.read_text(errors='replace')[-limit:]}" for log in logs)


@pytest.fixture(scope="module")
def ray_driver(ray_head: RayHead) -> Iterator[None]:
    """This process as a Ray driver for one module's tests, disconnected after them.

    A driver still connected when its head stops (at the end of the session, or when the node is
    declared dead under load) is ended by Ray itself, with exit status 1 — and pytest with it,
    before its summary.
    """
    yield
    _disconnect()


@pytest.fixture
def ray_address(ray_driver: None, ray_head: RayHead, monkeypatch: pytest.MonkeyPatch) -> str:
    """`RAY_ADDRESS` set to the session's head: `executor='ray'` connects to it. Returns `'ray'`."""
    monkeypatch.setenv("RAY_ADDRESS", ray_head.address)
    return "ray"


def _disconnect() -> None:
    """`ray.shutdown()` if this process is connected to Ray (without importing Ray otherwise)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """A Ray head with :data:`CPUS` CPUs on 127.0.0.1, stopped (its whole process group) at the end."""
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.fail(f"ray not found next to {sys.executable}: pip install 'mediatable[ray]'", pytrace=False)
    temp = Path(tempfile.mkdtemp(prefix="mtray-"))  # short: Ray's socket paths live below it
    port, client_port = free_port(), free_port()
    pythonpath = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])
    argv = [
        str(ray_bin),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--ray-client-server-port={client_port}",
        f"--num-cpus={CPUS}",
        "--object-store-memory=200000000",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    log_path = temp / "head.log"
    process = _start_node(argv, log_path, pythonpath)
    head = RayHead(f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}", CPUS, pythonpath, process, log_path)
    try:
        with scoped_env(RAY_ENV):  # the driver side of every Ray test
            deadline = time.monotonic() + _START_TIMEOUT
            while not _listening(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Ray head did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
                time.sleep(0.2)
            yield head
    finally:
        _disconnect()  # before the head goes: see ray_driver
        _stop(process)
        shutil.rmtree(temp, ignore_errors=True)


def _start_node(argv: list[str], log_path: Path, pythonpath: str) -> subprocess.Popen[bytes]:
    """`ray start ...` in a process group of its own, output to `log_path`, with no cloud, mediatable
    or Ray settings of this process (and :data:`HEAD_ENV`)."""
    cleared = ("AWS_", "GOOGLE_", "AZURE_", "STORAGE_EMULATOR", "MEDIATABLE_", "OPENAI_", "RAY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(cleared)}
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**env, **HEAD_ENV, "PYTHONPATH": pythonpath},
            start_new_session=True,
        )


@pytest.fixture
def ray_second_node(ray_driver: None, ray_head: RayHead) -> Iterator[None]:
    """A second Ray node (1 CPU) joined to the session's head on this machine, for one test.

    Started as `ray.cluster_utils.Cluster` adds nodes on one machine (`ray start --address=<head>`
    with its own ports); this process is connected to the head. Yields once the cluster counts two
    live nodes. At the end its raylet gets SIGTERM and is waited for until it has left the cluster,
    the node's process group is killed, and the cluster is waited for until it has the head's CPUs
    only: the other Ray tests' worker counts do not change.
    """
    ray = importlib.import_module("ray")  # not at the top: this plugin loads where Ray is not installed too
    if not ray.is_initialized():
        ray.init(address=ray_head.address, logging_level=logging.WARNING, configure_logging=False)
    log_path = ray_head.log_path.with_name("node2.log")
    argv = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--block",
        f"--address={ray_head.address}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--object-store-memory=80000000",
        "--min-worker-port=0",  # the OS picks them: the head's range is the default one
        "--max-worker-port=0",
        "--disable-usage-stats",
    ]
    process = _start_node(argv, log_path, ray_head.pythonpath)

    def wait_until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _NODE_TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} within {_NODE_TIMEOUT:.0f} s:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.1)

    def alive() -> int:
        return sum(1 for node in ray.nodes() if node["Alive"])

    try:
        wait_until(lambda: alive() == 2 or process.poll() is not None, "the second node did not join")
        assert process.poll() is None, log_path.read_text(errors="replace")
        yield
    finally:
        for pid in _members(process.pid, "raylet"):  # stopped so, a raylet leaves the cluster at once
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        wait_until(lambda: alive() == 1, "the second node did not leave")
        _stop(process)  # the rest of the node, at once
        wait_until(
            lambda: alive() == 1 and ray.cluster_resources().get("CPU") == ray_head.cpus,
            "the cluster did not lose the second node",
        )


def _members(group: int, name: str) -> list[int]:
    """The processes of process group `group` whose executable is `name` (from /proc: Linux)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):  # a process that just ended
            if (proc / "comm").read_text().strip() == name and os.getpgid(int(proc.name)) == group:
                found.append(int(proc.name))
    return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End a node's process group (the head's, or a second node's) at once with SIGKILL.

    A graceful stop (SIGTERM) took 34 s here, one of Ray's processes after another; nothing of the
    head outlives the test session anyway (its folder is removed next), and workers whose raylet is
    gone exit by themselves.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
