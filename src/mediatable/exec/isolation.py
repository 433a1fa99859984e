"""What runs in a worker process: one function call over a chunk of rows, from plain data.

The pipeline sends a :class:`CallTask`: the call (an expression node, pickled once per run with
cloudpickle; catalog columns travel as :class:`ColumnStub`), the values of the columns it reads,
and the local files of the media it opens — paths, never pixels. It gets back one value per row: a
result, a :class:`~mediatable.exprs.CellError`, or :class:`Stored` when the worker encoded and
wrote generated media itself. :func:`run_task` is a plain function of plain data, so any pool can
run it: the session's worker processes (:mod:`mediatable.exec.workers`), or another engine's.

State of a worker process, built by :func:`initialize` and on first use: its settings and media
store, the calls it has unpickled (by content hash, so a function keeps its module-level caches —
a loaded model — across chunks and runs), and a file cache of its own for a URL the coordinator did
not fetch for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import os
import pickle
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import cloudpickle
import numpy as np
import PIL.Image

from mediatable import types as ts
from mediatable.catalog.model import Column
from mediatable.config import Settings
from mediatable.errors import DataError, ExprError, MediaError
from mediatable.exprs import CellError, Expr
from mediatable.functions._errors import decode_errors
from mediatable.io.cache import FileCache, Lease
from mediatable.io.media_store import ImageEncoding, MediaStore
from mediatable.io.objects import ObjectStores
from mediatable.io.presign import Presigner
from mediatable.io.transfer import TransferStage
from mediatable.io.urls import is_url_like, redact_url


class WorkerLoadError(ExprError):
    """A worker process cannot rebuild a call (its function's module does not import there, ...)."""


@dataclasses.dataclass(frozen=True)
class ColumnStub:
    """What evaluation reads of a catalog column; stands in for it in a pickled call."""

    name: str
    col_type: ts.ColumnType
    table_name: str
    is_computed: bool


@dataclasses.dataclass(frozen=True)
class Stored:
    """Generated media that a worker saved: the URL to store, or (`staged`) the path of a file in
    the system temp folder for the coordinator to upload to the column's destination."""

    url: str
    staged: bool = False


@dataclasses.dataclass(frozen=True)
class SaveSpec:
    """Where and how a worker saves the generated media a call returns (a computed column's own result)."""

    table_id: int
    column: str
    col_type: ts.ColumnType
    encoding: ImageEncoding | None = None
    staging: bool = False  # the column has a destination: write a file to upload, not to the media store


@dataclasses.dataclass
class CallTask:
    """One call over a chunk of rows, as plain data.

    Attributes:
        key: content hash of `call` (the worker keeps what it unpickled under it).
        call: the pickled expression (:func:`dumps_call`).
        rows: per row, the values of the columns the call reads (media columns: their URLs).
        paths: media URL -> local file, or the error that kept it from being fetched.
        save: set when the call's results are a computed column's generated media.
    """

    key: str
    call: bytes
    rows: list[dict[str, Any]]
    paths: dict[str, str | MediaError]
    save: SaveSpec | None = None


class _CallPickler(cloudpickle.Pickler):
    """cloudpickle, with catalog columns reduced to stubs (a column's own computed expression stays home)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Column):
            return ColumnStub, (obj.name, obj.col_type, obj.table_name, obj.is_computed)
        return super().reducer_override(obj)


def dumps_call(call: Expr) -> tuple[str, bytes]:
    """(content hash, bytes) of `call` for :class:`CallTask`.

    Raises:
        pickle.PicklingError, TypeError, AttributeError: something in the call cannot be pickled.

    Examples:
        >>> from mediatable.exprs import Literal
        >>> key, blob = dumps_call(Literal(3))
        >>> len(key), pickle.loads(blob).value
        (64, 3)
    """
    buffer = io.BytesIO()
    _CallPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(call)
    blob = buffer.getvalue()
    return hashlib.sha256(blob).hexdigest(), blob


def open_local(path: str | BinaryIO, url: str, col_type: ts.ColumnType) -> Any:
    """What a function receives for a media value: a lazily opened PIL image for Image, else the path
    (or the file object).

    Raises:
        MediaDecodeError: an image whose header cannot be read; names the redacted URL.
    """
    if isinstance(col_type, ts.ImageType):
        try:
            return PIL.Image.open(path)
        except BaseException:
            with decode_errors("image", url=redact_url(url)):  # redacted only on failure: this path is hot
                raise
    return path


class RowImages:
    """The images one row's functions read: each file opened once per row and decoded at most once.

    The first function to ask for an image gets it as opened (header read, pixels not yet decoded:
    a header-only function decodes nothing, a downscale may decode at reduced scale). A later one
    gets that same image while nothing has been decoded, else its own copy of the decoded pixels:
    no file is decoded twice for one row, and what a function does to its copy no other sees. The
    first function to decode holds the row's own pixels: one that draws on its argument in place
    changes what later ones copy (such a function should draw on `img.copy()`; keeping a pristine
    copy for every row would double the memory of every decoded image).
    An image whose decoding failed is opened afresh for each later function, so each fails the same
    way (Pillow would let a second `load()` pass over the half-decoded pixels).
    """

    __slots__ = ("_failed", "_images")

    def __init__(self) -> None:
        self._images: dict[tuple[str, bool], PIL.Image.Image] = {}
        self._failed: set[tuple[str, bool]] = set()

    def get(self, url: str, ranged: bool, open_image: Callable[[], PIL.Image.Image]) -> PIL.Image.Image:
        """The row's image of `url` (`open_image` opens it when needed; the caller closes what it opened)."""
        key = (url, ranged)
        image = self._images.get(key)
        if image is None or key in self._failed:
            opened = open_image()
            if image is None:
                self._images[key] = opened
                self._note_failures(key, opened)
            return opened
        if image.tile:  # only the header has been read
            return image
        twin = image.copy()
        twin.format = image.format  # a copy has no format of its own; functions may read it
        return twin

    def _note_failures(self, key: tuple[str, bool], image: PIL.Image.Image) -> None:
        load = image.load

        def load_noting_failure() -> Any:
            try:
                return load()
            except BaseException:
                self._failed.add(key)
                raise

        image.load = load_noting_failure  # type: ignore[method-assign]

    def clear(self) -> None:
        self._images.clear()
        self._failed.clear()


def is_generated(value: Any) -> bool:
    """Whether a media result is something to save (an image, a file a function wrote), not a URL or nothing."""
    if value is None or isinstance(value, CellError):
        return False
    return not (isinstance(value, str) and is_url_like(value))


def save_generated(value: Any, save: SaveSpec, store: MediaStore) -> Any:
    """Save a generated media value (an image, a file a function wrote): its URL, or with
    `save.staging` a staged :class:`Stored` file for the coordinator to upload.

    Values that are not generated media (None, errors, URLs a function returned) pass unchanged; a
    failure to save becomes the cell's error.
    """
    if not save.col_type.is_media or not is_generated(value):
        return value
    try:
        if save.staging:
            staged = store.write(value, Path(tempfile.gettempdir()) / "mediatable-staged", save.encoding)
            return Stored(str(staged), staged=True)
        return store.save(value, save.table_id, save.column, save.encoding)
    except (DataError, OSError, ValueError) as exc:
        return CellError.from_exception(exc, f"result of {save.column}: ")


# -- the worker process ------------------------------------------------------------------------------


class _Worker:
    """The state of one worker process (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.media_store = MediaStore(settings.media_dir, ImageEncoding(settings.image_format, settings.image_quality))
        self.calls: dict[str, Expr] = {}
        self._lock = threading.Lock()
        self._cache: FileCache | None = None
        self._stage: TransferStage | None = None
        self._presigner: Presigner | None = None

    def call(self, task: CallTask) -> Expr:
        found = self.calls.get(task.key)
        if found is None:
            if len(self.calls) >= 256:  # bounded: a long-lived worker sees many runs
                self.calls.clear()
            try:
                found = pickle.loads(task.call)
            except Exception as exc:  # whatever the unpickled code raises: name it, keep the cause's text
                raise WorkerLoadError(
                    f"cannot load the call in a worker process: {type(exc).__name__}: {exc}"
                ) from None
            self.calls[task.key] = found
        return found

    def lease(self) -> Lease:
        """A lease on this process's own file cache (the same folder as the session's), built on first use."""
        with self._lock:
            if self._cache is None:
                self._stage = TransferStage.from_settings(self.settings)
                self._cache = FileCache(self.settings, ObjectStores(self.settings), self._stage)
            return self._cache.lease()

    def presigner(self) -> Presigner:
        """Signs URLs as the session does (signing is local: it needs the stores' credentials, no request)."""
        with self._lock:
            if self._presigner is None:
                self._presigner = Presigner(ObjectStores(self.settings))
            return self._presigner


_worker: list[_Worker] = []  # this process's state, when it is a worker


def initialize(settings: Settings) -> None:
    """Prepare a worker process: keep `settings`; leave Ctrl-C to the coordinating process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker[:] = [_Worker(settings)]


def ready(seconds: float) -> int:
    """Occupy this worker for `seconds` (so a pool starts all its workers at once); its process id."""
    time.sleep(seconds)
    return os.getpid()


def run_task(task: CallTask) -> list[Any]:
    """Evaluate the task's call over its rows, in this process; one value per row.

    Raises:
        RuntimeError: this process was not prepared with :func:`initialize`.
    """
    if not _worker:
        raise RuntimeError("run_task runs in a worker process prepared by initialize()")
    worker = _worker[0]
    call = worker.call(task)
    media = _WorkerMedia(task.paths, worker)
    envs = [WorkerRow(values, media) for values in task.rows]
    try:
        values = call.eval_batch(envs)
        if task.save is not None:
            saved = (save_generated(v, task.save, worker.media_store) for v in values)
            values = [Stored(v) if isinstance(v, str) else v for v in saved]
        return [portable(v) for v in values]
    finally:
        for env in envs:
            env.close()
        media.close()


class _WorkerMedia:
    """Local files for a task: those the coordinator fetched, else through this process's own cache."""

    def __init__(self, paths: dict[str, str | MediaError], worker: _Worker) -> None:
        self.paths = paths
        self.worker = worker
        self._lease: Lease | None = None

    def path(self, url: str) -> str:
        found = self.paths.get(url)
        if isinstance(found, MediaError):
            raise found
        if found is None:
            if self._lease is None:
                self._lease = self.worker.lease()
            found = self.paths[url] = str(self._lease.get(url))
        return found

    def close(self) -> None:
        if self._lease is not None:
            self._lease.close()


class WorkerRow:
    """One row's values in a worker process (implements :class:`~mediatable.exprs.cells.EvalEnv`)."""

    __slots__ = ("images", "media", "opened", "values")

    def __init__(self, values: dict[str, Any], media: _WorkerMedia) -> None:
        self.values = values
        self.media = media
        self.opened: list[PIL.Image.Image] = []
        self.images = RowImages()

    def column_value(self, column: Any) -> Any:
        return self.values.get(column.name)

    def open_media(self, url: str, col_type: ts.ColumnType, ranged: bool = False) -> Any:
        if not isinstance(col_type, ts.ImageType):
            return open_local(self.media.path(url), url, col_type)
        return self.images.get(url, ranged, lambda: self._open_image(url))

    def _open_image(self, url: str) -> PIL.Image.Image:
        image: PIL.Image.Image = open_local(self.media.path(url), url, ts.Image)  # local: the coordinator fetched it
        self.opened.append(image)
        return image

    def local_path(self, url: str) -> str:
        return self.media.path(url)

    def presign(self, urls: Sequence[str], expiration_seconds: int) -> list[str | MediaError]:
        return self.media.worker.presigner().presign(urls, expiration_seconds)

    def run_call(self, call: Any, envs: Sequence[Any], here: Callable[[Sequence[Any]], list[Any]]) -> list[Any]:
        return here(envs)  # already in a worker: nested calls run here

    def close(self) -> None:
        for image in self.opened:
            image.close()
        self.opened.clear()
        self.images.clear()


# -- values that cross the process boundary -------------------------------------------------------------

_PLAIN = (type(None), bool, int, float, str, bytes, Stored, dt.datetime, PIL.Image.Image, np.ndarray, np.generic)


def portable(value: Any) -> Any:
    """`value` as it can travel between processes: errors keep type and message (and their
    exception when it pickles); a value that cannot be pickled becomes the cell's error.

    Examples:
        >>> portable(CellError("ValueError", "bad", exc=ValueError("bad"))).exc
        ValueError('bad')
        >>> portable(lambda: 1).errortype
        'PicklingError'
    """
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, CellError):
        return CellError(value.errortype, value.errormsg, _exception(value.exc), stored=value.stored)
    try:
        pickle.loads(pickle.dumps(value))
    except Exception as exc:
        return CellError(
            "PicklingError", f"a {type(value).__name__} cannot be passed between processes: {exc}", _exception(exc)
        )
    return value


def _exception(exc: BaseException | None) -> BaseException | None:
    if exc is None:
        return None
    try:
        return pickle.loads(pickle.dumps(exc))  # type: ignore[no-any-return]
    except Exception:
        return None
