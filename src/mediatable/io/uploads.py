"""Uploads of generated media to destinations, on the session's one transfer stage.

A computed media column with a destination writes each value to a staging file (JPEG or PNG for
images, the function's own file otherwise), names it by its content (`<sha256><ext>`) and uploads
it to `<destination><name>` through :class:`~mediatable.io.transfer.TransferStage`: the same slots,
retries and event-loop thread as downloads. When the operation ends, each uploaded file moves into
the file cache under its new URL, so reading the column back downloads nothing. Until then the
operation's rows hold the staging file's `file://` URL, so columns computed from this one in the
same operation read the local bytes.

Lifecycle: one :class:`Uploads` per session; one :class:`UploadBatch` per pipeline run (``batch()``,
``add`` from any thread, then ``settle()`` once). Staging files live in a folder of this process
under ``<home>/media/.staging/``, locked while it lives; folders of dead processes are removed
when a session starts.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mimetypes
import os
import shutil
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from mediatable.errors import CacheError, MediaError
from mediatable.io.destinations import Destination, parse_destination
from mediatable.io.media_store import ImageEncoding, MediaStore
from mediatable.io.objects import ObjectInfo, ObjectStores
from mediatable.io.transfer import ProgressBar, ProgressBars, TransferStage
from mediatable.io.urls import MediaUrl, normalize_url, parse_url, redact_url

__all__ = ["UploadBatch", "Uploads"]

log = logging.getLogger(__name__)

_HASH_CHUNK = 1024 * 1024


class Cache(Protocol):
    """The part of :class:`~mediatable.io.cache.FileCache` uploads use."""

    async def adopt(self, url: str, source: Path, info: ObjectInfo) -> bool: ...


class Uploads:
    """Hands out upload batches for one session.

    Args:
        stores: the session's object stores (credentials, endpoints).
        stage: the session's transfer stage (shared with downloads).
        cache: the file cache uploaded files enter.
        media_store: writes values to files.
        staging: the folder under which this process keeps staging files.
        progress_bars: draws the upload progress bar (objects, bytes); None: no bar.
    """

    def __init__(
        self,
        stores: ObjectStores,
        stage: TransferStage,
        cache: Cache,
        media_store: MediaStore,
        staging: Path,
        progress_bars: ProgressBars | None = None,
    ) -> None:
        self.stores = stores
        self.stage = stage
        self.cache = cache
        self.media_store = media_store
        self.progress_bars = progress_bars
        self._staging_root = staging
        self._folder: Path | None = None
        self._lock_fd: int | None = None
        self._lock = threading.Lock()

    def batch(self) -> UploadBatch:
        """A new batch for one operation."""
        return UploadBatch(self)

    def folder(self) -> Path:
        """This process's staging folder (created, locked and the dead processes' swept on first use)."""
        with self._lock:
            if self._folder is None:
                self._staging_root.mkdir(parents=True, exist_ok=True)
                _remove_dead_folders(self._staging_root)
                folder = self._staging_root / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
                folder.mkdir(mode=0o700)
                fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)  # the kernel releases it when this process dies
                self._folder, self._lock_fd = folder, fd
            return self._folder

    def close(self) -> None:
        """Remove the staging folder."""
        with self._lock:
            folder, fd = self._folder, self._lock_fd
            self._folder = self._lock_fd = None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if fd is not None:
            os.close(fd)


class UploadBatch:
    """The uploads of one operation: started as values are generated, settled once at its end.

    Examples:
        See :class:`~mediatable.exec.pipeline.Pipeline`, which adds generated values and settles.
    """

    def __init__(self, uploads: Uploads) -> None:
        self._uploads = uploads
        self._lock = threading.Lock()
        self._destinations: dict[str, Destination] = {}
        self._staged: dict[str, tuple[str, Path, Future[ObjectInfo]]] = {}  # staging URL -> (url, file, upload)
        self._by_url: dict[str, str] = {}  # destination object URL -> its staging URL (one upload per object)
        self._bar: ProgressBar | None = None
        self._folder: Path | None = None  # this batch's own: names repeat across batches

    def add(self, value: Any, destination: str, encoding: ImageEncoding | None = None) -> str:
        """Stage `value` (a PIL image or a file path) for `destination` and start its upload.

        Images are encoded with `encoding` (default: the media store's).

        Returns:
            The staging file's `file://` URL: the value to use until :meth:`settle`.

        Raises:
            DataError: `value` is not media; InvalidArgument: `destination` is not valid.
        """
        uploads = self._uploads
        target = self._destination(destination)
        with self._lock:
            if self._folder is None:
                self._folder = uploads.folder() / uuid.uuid4().hex[:12]
        staged = uploads.media_store.write(value, self._folder, encoding)
        named = staged.with_name(_content_digest(staged) + staged.suffix)
        os.replace(staged, named)
        url = target.object_url(named.name)
        staging_url = normalize_url(str(named))
        with self._lock:
            known = self._by_url.get(url)
            if known is not None:
                return known  # identical bytes: one upload, one object (the rename replaced the same content)
            future = uploads.stage.submit(self._upload(parse_url(url), named))
            self._by_url[url] = staging_url
            self._staged[staging_url] = (url, named, future)
            if self._bar is None and uploads.progress_bars is not None:
                self._bar = uploads.progress_bars(f"Uploading to {redact_url(target.url)}", None, None)
        return staging_url

    def is_staged(self, value: Any) -> bool:
        """Whether `value` is a staging URL of this batch."""
        return isinstance(value, str) and value in self._staged

    def settle(self) -> dict[str, str | MediaError]:
        """Wait for every upload; move the uploaded files into the file cache; delete the rest.

        Returns:
            staging URL -> the object's URL, or the error that failed its upload.
        """
        with self._lock:
            staged = dict(self._staged)
        results: dict[str, str | MediaError] = {}
        adopt: list[tuple[str, Path, ObjectInfo]] = []
        try:
            for staging_url, (url, path, future) in staged.items():
                try:
                    info = future.result()
                except MediaError as error:
                    results[staging_url] = error
                    continue
                results[staging_url] = url
                if parse_url(url).kind != "file":
                    adopt.append((url, path, info))
            stage, cache = self._uploads.stage, self._uploads.cache
            for done, (url, _, _) in zip(
                stage.submit_many([cache.adopt(url, path, info) for url, path, info in adopt]), adopt, strict=True
            ):
                try:
                    done.result()
                except (CacheError, OSError) as exc:  # the upload succeeded; only the shortcut is lost
                    log.warning("uploaded %s but could not cache it: %s", redact_url(url), exc)
        finally:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)  # what was not adopted
            if self._bar is not None:
                self._bar.close()
        return results

    def _destination(self, destination: str) -> Destination:
        with self._lock:
            parsed = self._destinations.get(destination)
            if parsed is None:
                parsed = self._destinations[destination] = parse_destination(destination)
            return parsed

    async def _upload(self, url: MediaUrl, path: Path) -> ObjectInfo:
        uploads = self._uploads
        content_type = mimetypes.guess_type(path.name)[0]
        info = await uploads.stage.run(url, lambda: uploads.stores.put_file_async(url, path, content_type=content_type))
        if self._bar is not None:
            self._bar.advance(1, info.size)
        return info


def _content_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _remove_dead_folders(root: Path) -> None:
    """Remove staging folders whose process is gone (their lock is free)."""
    for folder in root.iterdir():
        lock = folder / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue  # no lock file (yet): not a staging folder, or one being created
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # alive
        finally:
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
