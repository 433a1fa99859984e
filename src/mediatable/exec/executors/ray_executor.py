"""The Ray executor: computed columns evaluated by actors on a Ray cluster (`executor='ray'`).

The driver (the process that called `add_computed_column`, `recompute_columns` or `insert`) plans,
Ray schedules, workers compute:

- **Fills** (adding or recomputing a column over stored rows): the driver cuts the pending rowids
  into ranges (:func:`~mediatable.exec.executors.jobs.partition`) and hands them to the actors as
  they become free. An actor reads its range's inputs from the catalog, fetches the media through
  its machine's file cache, computes, and stages the values with one idempotent upsert keyed by
  rowid (:mod:`~mediatable.exec.executors.staging`). The driver asks busy actors how many rows
  they computed (every half second) and shows the sum in the usual progress bar, then reads the
  staged values back and stores them in the table in the operation's own transaction.
- **Inserts**: the rows are not stored yet, so the driver sends them to the actors in chunks and
  gets the values back; the insert stays one transaction, as with the local executor.

Actors, not tasks: each actor keeps one :class:`~mediatable.exec.executors.worker.Worker` (its own
session, cache index and object stores) for the session's life, so a model or a client loads once
per worker process. An actor that dies (killed, out of memory, its node lost) costs its range one
more attempt on a fresh actor (:data:`MAX_ATTEMPTS` in all); nothing of a range is staged until
the whole range is, and staged rows are never written again, so no value is lost or written twice.

Lifecycle: :class:`RayCluster` connects on first use (unless this process is already connected to
Ray) and starts its actors; closing the session kills them. The Ray connection itself belongs to the
process, as Ray wants it, and stays until the process ends.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import ray
import ray.exceptions

from mediatable.catalog.catalog import read_only
from mediatable.catalog.model import Column, TableMeta
from mediatable.config import Settings
from mediatable.errors import CatalogError, ComputeError, ConfigError, Error
from mediatable.exec.executors.jobs import Job, partition
from mediatable.exec.executors.staging import Staging
from mediatable.exec.executors.worker import RangeDone, Worker, from_portable
from mediatable.exec.pipeline import preflight
from mediatable.exec.rows import ROWID, TableSql
from mediatable.exec.status import progress_bar
from mediatable.session import Session

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # per range: a range whose actor died this often stops the operation
ACTOR_START_TIMEOUT = 300.0  # seconds for new actors to start (imports, a session) before giving up
PROGRESS_INTERVAL = 0.5  # seconds between asking busy actors how far their ranges are
# Failures that lose an actor or its results, not a computation: the range is tried again elsewhere.
_LOST = (
    ray.exceptions.RayActorError,
    ray.exceptions.ActorUnavailableError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OutOfMemoryError,
)
_connected: list[str] = []  # the address this process connected Ray to (Ray allows one per process)

T = TypeVar("T")


def connect(address: str | None) -> None:
    """Connect this process to Ray at `address` (None: `RAY_ADDRESS`, or a new local cluster) unless it is.

    Raises:
        ConfigError: this process is connected to another Ray cluster already.
    """
    wanted = address or "ray"
    if ray.is_initialized():
        if _connected and _connected[0] != wanted:
            raise ConfigError(f"this process is connected to Ray at {_connected[0]!r}; it cannot also use {wanted!r}")
        return
    ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
    _connected[:] = [wanted]


class RayCluster:
    """This session's actors on the Ray cluster (see the module docstring). Thread-safe.

    Args:
        settings: the session's settings, sent to each actor by value.
        address: `ray://host:port`, or None (`RAY_ADDRESS` or a new local cluster).
    """

    def __init__(self, settings: Settings, address: str | None) -> None:
        connect(address)
        self.settings = settings
        self.size = settings.ray_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Two threads per actor: one computes, the other answers progress() while it does.
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0, max_concurrency=2)(Worker)
        self._actors: list[Any] = []
        self._lock = threading.Lock()

    def nodes(self) -> int:
        """How many live nodes the cluster has."""
        return sum(1 for node in ray.nodes() if node.get("Alive"))

    def actors(self, count: int) -> list[Any]:
        """`count` started actors (at most :attr:`size`), starting the missing ones.

        Raises:
            ComputeError: actors did not start (mediatable or a dependency missing on a node, no free CPUs).
        """
        with self._lock:
            new = [self._actor_class.remote(self.settings) for _ in range(min(count, self.size) - len(self._actors))]
            try:
                ray.get([actor.ready.remote() for actor in new], timeout=ACTOR_START_TIMEOUT)
            except ray.exceptions.GetTimeoutError:
                for actor in new:
                    ray.kill(actor)
                raise ComputeError(
                    f"Ray did not start {len(new)} workers within {ACTOR_START_TIMEOUT:.0f} s "
                    f"(cluster resources: {ray.cluster_resources()}); lower ray_workers or add nodes"
                ) from None
            except (*_LOST, ray.exceptions.RayTaskError) as exc:
                raise ComputeError(
                    f"Ray workers could not start (is mediatable installed on every node?): {exc}"
                ) from None
            self._actors += new
            return list(self._actors[: min(count, self.size)])

    def run(
        self,
        tasks: Sequence[T],
        submit: Callable[[Any, T], Any],
        done: Callable[[T, Any], None],
        describe: Callable[[T], str],
        progress: Callable[[T, int], None] | None = None,
    ) -> None:
        """Run every task on the actors, one at a time per actor; `done(task, result)` as each finishes.

        A task whose actor is lost is tried again on a new actor, up to :data:`MAX_ATTEMPTS` times.
        With `progress`, busy actors are asked every :data:`PROGRESS_INTERVAL` seconds how far they
        are: `progress(task, rows)` (a retried task starts again from 0).

        Raises:
            Error: what a task raised (e.g. `ComputeError` of a column with `on_error='abort'`); the
                actors still busy are stopped.
            ComputeError: a task's actor was lost :data:`MAX_ATTEMPTS` times.
        """
        if not tasks:
            return
        idle = self.actors(len(tasks))
        queue: collections.deque[tuple[T, int]] = collections.deque((task, 1) for task in tasks)
        running: dict[Any, tuple[Any, T, int]] = {}
        try:
            while queue or running:
                while idle and queue:
                    actor = idle.pop()
                    task, attempt = queue.popleft()
                    running[submit(actor, task)] = (actor, task, attempt)
                finished, _ = ray.wait(list(running), num_returns=1, timeout=PROGRESS_INTERVAL if progress else None)
                if not finished and progress is not None:
                    self._poll(running, progress)
                for ref in finished:
                    actor, task, attempt = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except _LOST as exc:
                        self._forget(actor)
                        if attempt >= MAX_ATTEMPTS:
                            raise ComputeError(
                                f"{describe(task)}: its Ray worker was lost {attempt} times; last: {_first_line(exc)}"
                            ) from None
                        log.warning("%s: Ray worker lost (%s); trying again", describe(task), _first_line(exc))
                        queue.appendleft((task, attempt + 1))
                        idle.append(self._replacement())
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        raise _cause(exc, describe(task)) from None
                    done(task, result)
                    idle.append(actor)
        except BaseException:
            for actor, _, _ in running.values():  # stop work nobody will use; what they staged stays
                self._forget(actor)
                ray.kill(actor)
            raise

    def _poll(self, running: dict[Any, tuple[Any, T, int]], progress: Callable[[T, int], None]) -> None:
        asked = [(actor.progress.remote(), task) for actor, task, _ in running.values()]
        try:
            counts = ray.get([ref for ref, _ in asked], timeout=PROGRESS_INTERVAL)
        except (ray.exceptions.GetTimeoutError, *_LOST):
            return  # a lost actor shows up as its task's failure; progress can wait
        for (_, task), rows in zip(asked, counts, strict=True):
            progress(task, rows)

    def close(self) -> None:
        """Stop this session's actors."""
        with self._lock:
            actors, self._actors = self._actors, []
        for actor in actors:
            with contextlib.suppress(ray.exceptions.RayError):
                ray.kill(actor)

    def _replacement(self) -> Any:
        # Not waited for: if it cannot start, the task sent to it fails as lost and counts as an attempt.
        actor = self._actor_class.remote(self.settings)
        with self._lock:
            self._actors.append(actor)
        return actor

    def _forget(self, actor: Any) -> None:
        with self._lock:
            if actor in self._actors:
                self._actors.remove(actor)


class RayExecutor:
    """Computes on a :class:`RayCluster` (implements :class:`~mediatable.exec.compute.Executor`)."""

    def __init__(self, cluster: RayCluster) -> None:
        self.cluster = cluster

    @contextlib.contextmanager
    def fill(
        self,
        session: Session,
        meta: TableMeta,
        rows: list[dict[str, Any]],
        columns: Sequence[Column],
        on_error: str | None,
        desc: str,
    ) -> Iterator[None]:
        preflight(rows, [(c.name, c.computed.get()) for c in columns])
        job = Job.of(meta, columns, on_error)
        self._check_cluster(session, job)
        stage = Staging(job)
        stage.open(session.engine)
        try:
            self._fill(session, meta, job, stage, rows, desc)
            yield
        except (CatalogError, ComputeError) as exc:
            # The schema changed, or a column with on_error='abort' failed: what is staged is of no use.
            # Other failures (workers lost, an interrupt) keep it, and running the same work again resumes.
            if isinstance(exc, CatalogError) or exc.column is not None:
                stage.drop(session.engine)
            raise
        stage.drop(session.engine)

    def _fill(
        self, session: Session, meta: TableMeta, job: Job, stage: Staging, rows: list[dict[str, Any]], desc: str
    ) -> None:
        rowids = [row[ROWID] for row in rows]
        sql = TableSql(meta)
        with read_only(session.engine) as conn:
            staged = stage.present(conn, rowids, sql.table)
        if staged:
            log.info("%s: %d of %d rows were computed by an earlier run", desc, len(staged), len(rows))
        todo = [rowid for rowid in rowids if rowid not in staged]
        bar = progress_bar(session.settings, desc, total=len(rows))
        bar.update(len(staged))

        shown: dict[int, int] = {}  # rows shown on the bar per running range (by its first rowid)

        def advanced(rowids: list[int], computed: int) -> None:
            if computed > shown.get(rowids[0], 0):
                bar.update(computed - shown.get(rowids[0], 0))
                shown[rowids[0]] = computed

        def finished(rowids: list[int], result: RangeDone) -> None:
            bar.update(result.rows - shown.pop(rowids[0], 0))

        try:
            self.cluster.run(
                partition(todo, self.cluster.size),
                lambda actor, rowids: actor.fill.remote(job, rowids),
                finished,
                lambda rowids: f"computing {meta.path}.{', '.join(job.names)} for rows {rowids[0]}..{rowids[-1]}",
                advanced,
            )
        finally:
            bar.close()
        with read_only(session.engine) as conn:
            missing = stage.read_into(conn, rows)
            if missing:  # rows deleted while the work ran are not stored; any other is a lost value
                present = set(conn.execute(sql.table.select().with_only_columns(sql.table.c[ROWID])).scalars())
                still = [rowid for rowid in missing if rowid in present]
                if still:
                    raise ComputeError(f"{meta.path}: no values were staged for rows {still[:10]}")
                rows[:] = [row for row in rows if row[ROWID] not in set(missing)]

    def compute(
        self,
        session: Session,
        meta: TableMeta,
        lease: Any,
        rows: list[dict[str, Any]],
        columns: Sequence[Column],
        on_error: str | None,
    ) -> None:
        if not rows or not columns:
            return
        job = Job.of(meta, columns, on_error)
        self._check_cluster(session, job)

        def finished(positions: list[int], values: list[list[Any]]) -> None:
            for position, row_values in zip(positions, values, strict=True):
                for column, value in zip(columns, row_values, strict=True):
                    rows[position][column.name] = from_portable(value)

        self.cluster.run(
            partition(list(range(len(rows))), self.cluster.size),
            lambda actor, positions: actor.compute.remote(job, [rows[p] for p in positions]),
            finished,
            lambda positions: (
                f"computing {meta.path}.{', '.join(job.names)} for input rows {positions[0]}..{positions[-1]}"
            ),
        )

    def _check_cluster(self, session: Session, job: Job) -> None:
        """Once the cluster has several nodes, the catalog and generated media must be where all nodes reach them.

        Raises:
            ConfigError: a SQLite catalog (a file on this machine), or a media column without a destination.
        """
        local = [spec.name for spec in job.columns if _is_media(spec.col_type) and spec.destination is None]
        sqlite = session.engine.dialect.name == "sqlite"
        if not (local or sqlite) or self.cluster.nodes() < 2:
            return
        if sqlite:
            raise ConfigError(
                "the catalog is an SQLite file on this machine, which Ray workers on other nodes cannot reach: "
                "use a PostgreSQL catalog (MEDIATABLE_DB_URL=postgresql+psycopg://...)"
            )
        raise ConfigError(
            f"column {local[0]!r} generates media, which Ray workers on other nodes would write to their own "
            f"disks: give it a destination= (a bucket) or set output_media_dest"
        )


def _is_media(col_type: dict[str, Any]) -> bool:
    return col_type.get("type") in ("Image", "Video", "Audio", "Document")


def _cause(exc: ray.exceptions.RayTaskError, what: str) -> BaseException:
    """The exception a task raised, as mediatable raises it (other exceptions become a ComputeError)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, Error):
        return cause
    return ComputeError(f"{what}: a Ray worker failed: {_first_line(cause or exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
