"""Where function calls run: the pipeline's threads, or the session's worker processes.

Threads suit work that releases the GIL (Pillow, PyAV, numpy, ONNX, I/O): no copies, no start-up.
Pure-Python work holds the GIL and uses one core however many threads run it; it runs in
:class:`WorkerProcesses` instead, `compute_workers` processes started on first use and kept until
the session closes. A call goes there with the values of the columns it reads and the local paths
of its media (:class:`~mediatable.exec.isolation.CallTask`); the worker opens the files, computes,
encodes and writes generated images itself, and sends back small values.

:class:`CallRouter` decides per function (`@udf(isolation=...)`):

- `'thread'`: threads; `'process'`: the worker processes.
- `'auto'`: threads, while measuring. When the calls keep about one core busy in total (CPU time of
  the calling threads over elapsed time, 0.6 to 1.3 cores) although every thread computes, each
  call getting at most 80% of its elapsed time on a CPU, the function is GIL-bound; if the work
  still to do is worth starting processes (an estimated second, a tenth of one once they run), the
  rest of the run goes to the processes and the session remembers the choice. Functions are moved
  only where that is safe: they pickle, they are not light, they do not close over variables of
  their caller (whose changes a copy in another process would not share), and the main module
  re-imports without running work (a script keeps its top-level code under
  `if __name__ == '__main__':`, as every process-based tool requires).

Results, per-cell errors, ordering and progress are the same either way: the pipeline drives both.
A worker that dies (a crash in native code, the OOM killer) costs only the cells that kill it: the
rows of its call run again one by one on a fresh pool, and a row that kills a worker twice more gets
a `WorkerCrashed` error; the other rows proceed.

Lifecycle: :func:`worker_processes` gives the session's one instance, created on first use and
closed with the session (:meth:`~mediatable.session.Session.resource`). Start method: forkserver —
workers fork from a clean single-threaded server that imported mediatable once; forking the session's
own process is unsafe, since it runs threads.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from mediatable.config import Settings
from mediatable.errors import ExprError, MediaError
from mediatable.exec import isolation
from mediatable.exprs import CellError, ColumnRef, FunctionCall
from mediatable.session import Session

MEASURE_SECONDS = 0.3  # of elapsed time measured before an automatic choice
START_WORTH_SECONDS = 1.0  # estimated work left that pays for starting worker processes
RUN_WORTH_SECONDS = 0.1  # ... when they already run
LOST_CALL_SECONDS = 5.0  # how long a broken pool may take to fail a call it holds, before we give up on it


class WorkerCrashed(Exception):
    """A worker process died while computing a call (its cells get this error)."""


class WorkerProcesses:
    """The session's worker processes (see the module docstring), and its automatic choices.

    Thread-safe. Examples:
        >>> import tempfile
        >>> from mediatable.config import load_settings
        >>> processes = WorkerProcesses(load_settings(tempfile.mkdtemp(), environ={}, compute_workers=2))
        >>> processes.started, processes.count
        (False, 2)
        >>> processes.close()
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.compute_workers
        # what 'auto' measured, by function name: CPU seconds per row of a GIL-bound function, 0.0 for others
        self.costs: dict[str, float] = {}
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._broken: weakref.WeakSet[ProcessPoolExecutor] = weakref.WeakSet()  # discarded after they broke
        self.lost_call_seconds = LOST_CALL_SECONDS
        self._closed = False

    @property
    def started(self) -> bool:
        return self._executor is not None

    def run(self, task: isolation.CallTask) -> list[Any]:
        """Run `task` in a worker process and return its values.

        A dead worker costs only the cells that kill it: its rows run again one by one on a fresh
        pool, and a row whose worker dies twice more gets a :class:`WorkerCrashed` error (twice: a
        pool also breaks under the calls of other threads when one of them kills a worker).
        """
        values = self._attempt(task)
        if not isinstance(values, BrokenProcessPool):
            return values
        out: list[Any] = []
        for row in task.rows:
            single = self._attempt(dataclasses.replace(task, rows=[row]))
            if isinstance(single, BrokenProcessPool):
                single = self._attempt(dataclasses.replace(task, rows=[row]))
            if isinstance(single, BrokenProcessPool):
                crash = WorkerCrashed(f"the worker process computing this value died ({single})")
                single = [CellError.from_exception(crash)]
            out += single
        return out

    def _attempt(self, task: isolation.CallTask) -> list[Any] | BrokenProcessPool:
        """The task's values, or the error of a pool that broke under it (that pool is gone then)."""
        executor = self._pool()
        try:
            return self._values(executor, executor.submit(isolation.run_task, task))
        except BrokenProcessPool as exc:
            self._discard(executor)
            return exc

    def _values(self, executor: ProcessPoolExecutor, future: Future[list[Any]]) -> list[Any]:
        """The result of a call in `executor`, waited for at most `lost_call_seconds` once the pool is broken.

        CPython 3.11's pool can lose a call submitted while it breaks (it fails the calls it holds
        without the lock that submitting takes): that future would never settle, and its thread
        would wait forever.

        Raises:
            BrokenProcessPool: the pool broke under the call, or lost it.
        """
        broken_at: float | None = None
        while True:
            try:
                return future.result(timeout=0.25)
            except TimeoutError:
                # Broken: discarded by the thread whose call broke it, or flagged by the pool itself (a
                # worker that died idle breaks it with no call of ours failing).
                if broken_at is None and (executor in self._broken or getattr(executor, "_broken", False)):
                    broken_at = time.monotonic()
                if broken_at is not None and time.monotonic() - broken_at > self.lost_call_seconds:
                    raise BrokenProcessPool("the worker pool broke while this call was handed to it") from None

    def close(self) -> None:
        """Stop the workers (waits for running calls; pending ones are cancelled)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise ExprError("the session's worker processes are closed")
            if self._executor is None:
                check_main_module()
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["mediatable.exec.isolation"])
                executor = ProcessPoolExecutor(
                    self.count, mp_context=context, initializer=isolation.initialize, initargs=(self.settings,)
                )
                # Start every worker now: each of these tasks keeps its worker busy while the next is
                # submitted, so the pool spawns a new one for it. A pool that spawns on demand later can
                # start a process while it breaks, and then waits for that process forever (CPython 3.11).
                for started in [executor.submit(isolation.ready, 0.05) for _ in range(self.count)]:
                    started.result()
                self._executor = executor
            return self._executor

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        """Forget a broken pool and end what is left of it (its other workers are killed, not waited for)."""
        with self._lock:
            self._broken.add(executor)
            if self._executor is executor:
                self._executor = None
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()


def worker_processes(session: Session) -> WorkerProcesses:
    """The session's :class:`WorkerProcesses` (created on first use, closed with the session)."""
    return session.resource("exec.workers", lambda: WorkerProcesses(session.settings))


class CallRouter:
    """Runs the function calls of one pipeline run where they belong (see the module docstring).

    The pipeline's row environments hand every call to :meth:`run_call`; one router serves the
    threads of a run, so it is thread-safe.
    """

    def __init__(self, processes: WorkerProcesses | None, threads: int, rows: int) -> None:
        self.processes = processes
        self.threads = threads
        self.rows = rows
        self._lock = threading.Lock()
        self._plans: dict[int, _Plan] = {}

    def run_call(
        self, call: FunctionCall, envs: Sequence[Any], here: Callable[[Sequence[Any]], list[Any]], save: Any = None
    ) -> list[Any]:
        """Values of `call` over `envs`: computed by `here` (this thread) or in a worker process.

        Args:
            save: a :class:`~mediatable.exec.isolation.SaveSpec` when the results are a computed
                column's generated media (a worker then saves them itself).
        """
        plan = self._plan(call)
        if plan.where == "process":
            assert self.processes is not None
            try:
                return self.processes.run(plan.task(envs, save))
            except isolation.WorkerLoadError:
                if not plan.automatic:
                    raise
                plan.where = "thread"  # moved by 'auto' but cannot load there: stay here, as before
                self.processes.costs.pop(call.function.name, None)
                return here(envs)
        if plan.where == "thread":
            return here(envs)
        cpu, start = time.thread_time(), time.perf_counter()
        values = here(envs)
        self._measured(plan, len(envs), time.thread_time() - cpu, start, time.perf_counter())
        return values

    def _plan(self, call: FunctionCall) -> _Plan:
        with self._lock:
            plan = self._plans.get(id(call))
            if plan is None:
                plan = self._plans[id(call)] = _Plan(call)
                plan.where = self._first_choice(plan)
            return plan

    def _first_choice(self, plan: _Plan) -> str:
        call, function = plan.call, plan.call.function
        chosen = getattr(function, "isolation", "auto")  # functions stored before isolation existed lack it
        if chosen == "process":
            if self.processes is None:
                raise ExprError(f"{function.name}: isolation='process' needs a session's worker processes")
            _pickled(call, strict=True)
            return "process"
        processes = self.processes
        if chosen == "thread" or processes is None or function.light or processes.count < 2 or self.threads < 2:
            return "thread"  # nothing to gain from processes, or nothing to measure with one thread
        if not _movable(call):
            return "thread"
        plan.automatic = True
        cost = processes.costs.get(function.name)
        if cost is None:
            return "measure"
        return "process" if cost > 0 and self._worth(cost * self.rows) else "thread"

    def _worth(self, seconds: float) -> bool:
        assert self.processes is not None
        return seconds >= (RUN_WORTH_SECONDS if self.processes.started else START_WORTH_SECONDS)

    def _measured(self, plan: _Plan, rows: int, cpu: float, start: float, end: float) -> None:
        assert self.processes is not None
        with self._lock:
            if plan.where != "measure":
                return
            plan.add(rows, cpu, start, end)
            if plan.span < MEASURE_SECONDS or plan.calls < 2 * self.threads:
                return
            bound = gil_bound(plan.cpu, plan.span, plan.elapsed)
            cost = plan.cpu / plan.rows if bound else 0.0
            self.processes.costs[plan.call.function.name] = cost
            plan.where = "process" if bound and self._worth(cost * (self.rows - plan.rows)) else "thread"


def gil_bound(cpu: float, span: float, elapsed: float) -> bool:
    """Whether calls measured on several threads were serialized by the GIL.

    Args:
        cpu: CPU seconds of the calling threads inside the calls, summed.
        span: seconds from the first call's start to the last call's end.
        elapsed: the calls' own elapsed seconds, summed (about threads x span when all were busy).

    Returns:
        True when the calls kept about one core busy in all (0.6 to 1.3 cores) while each got at
        most 80% of its elapsed time on a CPU: the threads took turns.

    Examples:
        >>> gil_bound(cpu=0.95, span=1.0, elapsed=2.0), gil_bound(cpu=1.9, span=1.0, elapsed=2.0)
        (True, False)
    """
    if span <= 0 or elapsed <= 0:
        return False
    busy, share = cpu / span, cpu / elapsed
    return 0.6 <= busy <= 1.3 and share <= 0.8


class _Plan:
    """Where one call of a run goes, its pickled form, and (while measuring) what it cost."""

    def __init__(self, call: FunctionCall) -> None:
        self.call = call
        self.where = "thread"
        self.automatic = False  # placed by 'auto' (a failure to load in a worker falls back to threads)
        self.rows = self.calls = 0
        self.cpu = self.elapsed = 0.0
        self.first = self.last = 0.0
        self._pickled: tuple[str, bytes] | None = None
        self._columns = sorted({n.column.name for n in call.walk() if isinstance(n, ColumnRef)})
        self._media = sorted({n.column.name for n in call.walk() if isinstance(n, ColumnRef) and n.col_type.is_media})

    @property
    def span(self) -> float:
        return self.last - self.first

    def add(self, rows: int, cpu: float, start: float, end: float) -> None:
        self.first = start if not self.calls else min(self.first, start)
        self.last = max(self.last, end)
        self.rows += rows
        self.calls += 1
        self.cpu += cpu
        self.elapsed += end - start

    def task(self, envs: Sequence[Any], save: Any) -> isolation.CallTask:
        """The call over `envs` as plain data; media resolved to local files by the pipeline's envs."""
        if self._pickled is None:
            self._pickled = _pickled(self.call, strict=True)
        key, blob = self._pickled
        rows = []
        paths: dict[str, str | MediaError] = {}
        for env in envs:
            values = env.values
            rows.append({name: isolation.portable(values.get(name)) for name in self._columns})
            for name in self._media:
                url = values.get(name)
                if isinstance(url, str) and url not in paths:
                    try:
                        paths[url] = str(env.media.path(url))
                    except MediaError as error:
                        paths[url] = error
        return isolation.CallTask(key, blob, rows, paths, save)


def _pickled(call: FunctionCall, strict: bool) -> tuple[str, bytes] | None:
    try:
        return isolation.dumps_call(call)
    except Exception as exc:  # pickle raises PicklingError, TypeError or AttributeError, among others
        if strict:
            raise ExprError(
                f"{call.function.name} cannot be sent to a worker process ({type(exc).__name__}: {exc}); "
                "use isolation='thread'"
            ) from exc
        return None


def _movable(call: FunctionCall) -> bool:
    """Whether 'auto' may move `call` to a worker process (see the module docstring)."""
    for node in call.walk():
        if isinstance(node, FunctionCall):
            fn = node.function.fn
            closure_free = not getattr(getattr(fn, "__code__", None), "co_freevars", ())
            if getattr(node.function, "isolation", "auto") == "thread" or getattr(node.function, "ranged", False):
                return False  # pinned here, or reads ranges of remote files through this process's cache
            if not closure_free and not _importable(node.function):
                return False
    return _main_reimports_safely() and _pickled(call, strict=False) is not None


def _importable(function: Any) -> bool:
    """A function object found again by module and name (pickled by reference, not by value)."""
    module = sys.modules.get(function.fn.__module__)
    if module is None or module.__name__ == "__main__":
        return False
    found: Any = module
    for part in function.fn.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is function


@functools.cache
def _main_reimports_safely() -> bool:
    """Whether worker processes may import the main module: none, `python -m pkg`, or guarded work.

    Worker processes run the main script again as `__mp_main__` (multiprocessing's spawn and
    forkserver do), except for a package's `__main__` module.
    """
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None and (spec_name == "__main__" or spec_name.endswith(".__main__")):
        return True
    origin = getattr(main, "__file__", None)
    if not origin:
        return True  # an interactive session or a notebook: nothing is run again
    try:
        text = Path(origin).read_text(errors="replace")
    except OSError:
        return False
    return re.search(r"""if\s+__name__\s*==\s*['"]__main__['"]\s*:""", text) is not None


def check_main_module() -> None:
    """Refuse to start worker processes that would run a script's top-level code again.

    Raises:
        ExprError: the main module is a script without an `if __name__ == '__main__':` guard.
    """
    if not _main_reimports_safely():
        main = sys.modules.get("__main__")
        raise ExprError(
            f"worker processes import the main module {getattr(main, '__file__', '?')!r} again; put its "
            "top-level code under `if __name__ == '__main__':` to use isolation='process'"
        )
