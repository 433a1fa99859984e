"""What every model function shares: optional packages, lazy loading once per process, cells in batches.

- :func:`require` imports an optional package or raises :class:`~mediatable.errors.MissingDependency`
  naming the pip command; :class:`ModelFunction` checks the packages are installed (without importing
  them) as soon as an expression is built, so `add_computed_column` fails before any row is touched.
- :class:`LazyModel` loads a model on first use, once per process, whichever compute thread asks first.
- :func:`per_cell` runs one item of a batch at a time, so a bad image costs its own cell only.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Generic, TypeVar

from mediatable import types as ts
from mediatable.errors import ComputeError, MissingDependency
from mediatable.exprs import CellError, Expr
from mediatable.functions.udf import Function

M = TypeVar("M")

INSTALL_HINT = "pip install 'mediatable[ai]'"


def missing_packages(packages: Mapping[str, str]) -> list[str]:
    """The pip names of `packages` (module -> pip name) that are not installed; nothing is imported.

    Examples:
        >>> missing_packages({"json": "json", "no_such_module_here": "no-such-package"})
        ['no-such-package']
    """
    missing = []
    for module, pip_name in packages.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(pip_name)
    return missing


def missing_error(feature: str, pip_names: Sequence[str]) -> MissingDependency:
    """The error for `feature` when `pip_names` are not installed.

    Examples:
        >>> print(missing_error("mt.functions.ocr", ["rapidocr"]))
        mt.functions.ocr needs rapidocr, which is not installed: pip install 'mediatable[ai]'
    """
    return MissingDependency(f"{feature} needs {', '.join(pip_names)}, which is not installed: {INSTALL_HINT}")


def require(module: str, pip_name: str, feature: str) -> ModuleType:
    """Import an optional package.

    Raises:
        MissingDependency: it is not installed; the message names the pip command.

    Examples:
        >>> require("json", "json", "a doctest").dumps([1])
        '[1]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_error(feature, [pip_name]) from exc


class LazyModel(Generic[M]):
    """A model loaded on first use, once per process, and shared by every compute thread.

    Lifecycle: constructing it (at import of its module) loads nothing; the first :meth:`get` runs
    `loader` under a lock while other threads wait for it; later calls return the same object.
    A failed load raises to every caller of that moment and is tried again on the next call.
    :meth:`use` also serializes inference, for models that already use every core per call.

    Examples:
        >>> model = LazyModel("doubler", lambda: (lambda x: 2 * x))
        >>> model.loads, model.get()(21), model.loads
        (0, 42, 1)
    """

    def __init__(self, name: str, loader: Callable[[], M]) -> None:
        self.name = name
        self.loader = loader
        self.loads = 0
        self._model: M | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<LazyModel {self.name} {'loaded' if self._model is not None else 'not loaded'}>"

    def get(self) -> M:
        """The model, loaded now if this is the first use in this process."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is None:
                self._model = self.loader()
                self.loads += 1
            return self._model

    @contextmanager
    def use(self) -> Iterator[M]:
        """The model, held by this thread alone until the block ends."""
        model = self.get()
        with self._run_lock:
            yield model


class ModelFunction(Function):
    """A :class:`~mediatable.functions.udf.Function` that needs optional packages (and maybe settings).

    Building an expression with it (`mt.functions.ocr(t.image)`) checks that the packages are
    installed, without importing them, and runs `check` on the call's arguments, so a missing extra
    or a missing API key is one clear error when the column is added, not one per cell.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        packages: Mapping[str, str],
        check: Callable[[dict[str, Any]], None] | None = None,
        **options: Any,
    ) -> None:
        # Threads, not 'auto': inference runs in native code that releases the GIL, and a model serialized
        # by LazyModel.use looks GIL-bound to 'auto' (the threads take turns) although moving it would
        # load the model again in every worker process and oversubscribe the cores it already uses.
        options.setdefault("isolation", "thread")
        super().__init__(fn, **options)
        self.packages = dict(packages)
        self.check = check

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, Expr) for a in (*args, *kwargs.values())):
            missing = missing_packages(self.packages)
            if missing:
                raise missing_error(f"mt.functions.{self.__name__}", missing)
            if self.check is not None:
                self.check(kwargs)
            return super().__call__(*args, **kwargs)
        if self.batch_size and args and not isinstance(args[0], list):
            # called directly on one value: one value back, and a failure raises
            (result,) = self.fn(*([a] for a in args), **{k: [v] for k, v in kwargs.items()})
            if isinstance(result, CellError):
                raise result.exc if result.exc is not None else ComputeError(result.errormsg)
            return result
        return self.fn(*args, **kwargs)


def model_udf(
    *,
    packages: Mapping[str, str] | None = None,
    batch_size: int | None = None,
    returns: ts.ColumnType | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Callable[[Callable[..., Any]], ModelFunction]:
    """Decorate a model function: like `@mt.udf`, plus the optional packages it needs (module -> pip name)."""

    def wrap(fn: Callable[..., Any]) -> ModelFunction:
        return ModelFunction(fn, packages=packages or {}, check=check, batch_size=batch_size, return_type=returns)

    return wrap


def per_cell(fn: Callable[..., Any], *columns: Sequence[Any]) -> list[Any]:
    """`fn` over the items of a batch one at a time; an item that fails becomes that cell's error.

    Examples:
        >>> per_cell(lambda a, b: a // b, [6, 1], [3, 0])
        [2, CellError(ZeroDivisionError: integer division or modulo by zero)]
    """
    out: list[Any] = []
    for items in zip(*columns, strict=True):
        try:
            out.append(fn(*items))
        except Exception as exc:  # one cell's failure, carried as its error like any per-row function's
            out.append(CellError.from_exception(exc))
    return out


def column(value: Any, n: int) -> list[Any]:
    """A batched call's argument as a list of `n` values: lists pass, an unset default repeats.

    Examples:
        >>> column([1, 2], 2), column(None, 2)
        ([1, 2], [None, None])
    """
    return list(value) if isinstance(value, list) else [value] * n
