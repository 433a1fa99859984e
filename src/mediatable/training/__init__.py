"""Training on a query's rows: PyTorch datasets that read through the shared file cache.

:mod:`~mediatable.training.source` snapshots a query's rows and rebuilds the query in other
processes, :mod:`~mediatable.training.shards` deals rows to ranks and workers,
:mod:`~mediatable.training.samples` turns values into samples and
:mod:`~mediatable.training.pytorch` holds the datasets. PyTorch is optional (`mediatable[torch]`):
only :func:`pytorch_module` imports the modules that need it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mediatable.errors import MissingDependency


def pytorch_module() -> ModuleType:
    """:mod:`mediatable.training.pytorch`, imported now (PyTorch is an optional dependency).

    Raises:
        MissingDependency: PyTorch is not installed; the message names the pip command.

    Examples:
        >>> pytorch_module().TableIterableDataset.__name__
        'TableIterableDataset'
    """
    try:
        return importlib.import_module("mediatable.training.pytorch")
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "torch":
            raise
        raise MissingDependency(
            "PyTorch datasets need torch, which is not installed: pip install 'mediatable[torch]'"
        ) from exc
