"""Executors: where a table operation evaluates its computed columns.

`executor='local'` (the default, setting `executor`, env `MEDIATABLE_EXECUTOR`) computes in this
process (:class:`~mediatable.exec.compute.LocalExecutor`). `'ray'` (the cluster of `RAY_ADDRESS`, or
a new local one) and `'ray://host:port'` compute on a Ray cluster
(:mod:`~mediatable.exec.executors.ray_executor`, which needs `pip install 'mediatable[ray]'`; Ray is
imported only when one of them is used). Modules: :mod:`.jobs` (what is computed, as plain data),
:mod:`.staging` (where workers write values before the table gets them), :mod:`.worker` (what a
worker process does, knowing no Ray).
"""

from __future__ import annotations

import importlib
from typing import Any

from mediatable.config import check_executor
from mediatable.errors import MissingDependency
from mediatable.exec.compute import LOCAL, Executor
from mediatable.session import Session


def executor_for(session: Session, choice: str | None = None) -> Executor:
    """The executor named by `choice` (default: the session's `executor` setting).

    Raises:
        ConfigError: `choice` names no executor.
        MissingDependency: a Ray executor without Ray installed.

    Examples:
        >>> import tempfile
        >>> from mediatable.config import load_settings
        >>> session = Session(load_settings(tempfile.mkdtemp(), environ={}))
        >>> executor_for(session) is LOCAL
        True
        >>> session.close()
    """
    chosen = check_executor(choice or session.settings.executor)
    if chosen == "local":
        return LOCAL
    module = _ray_executor()
    address = None if chosen == "ray" else chosen
    cluster = session.resource(f"executor:{chosen}", lambda: module.RayCluster(session.settings, address))
    return module.RayExecutor(cluster)  # type: ignore[no-any-return]


def _ray_executor() -> Any:
    try:
        return importlib.import_module("mediatable.exec.executors.ray_executor")
    except ModuleNotFoundError as exc:
        if exc.name != "ray" and not (exc.name or "").startswith("ray."):
            raise
        raise MissingDependency(f"executor='ray' needs Ray: pip install 'mediatable[ray]' ({exc})") from exc
