"""The session: everything one `mt.init()` builds, passed down instead of global singletons.

Lifecycle: `mt.init()` builds a :class:`Session` (settings, catalog engine, file cache, object
stores, media store) and makes it the current one; later calls of the module-level API use it.
`mt.init()` again replaces it (closing the old one). Layers above add what they build on first use
(`exec` its worker processes, the Ray executor its actors) through :meth:`Session.resource`; closing
the session closes those first. Nothing else is global. The session knows
nothing of tables as users see them: :mod:`mediatable.table` builds handles over it.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from mediatable.catalog.catalog import Catalog, create_engine
from mediatable.config import Settings, create_home, create_private_file
from mediatable.functions.ai import providers
from mediatable.io.cache import FileCache
from mediatable.io.media_store import ImageEncoding, MediaStore
from mediatable.io.objects import ObjectStores
from mediatable.io.presign import Presigner
from mediatable.io.transfer import ProgressBars, TransferStage
from mediatable.io.uploads import Uploads


def mask_password(url: str) -> str:
    """A database URL with its password replaced by `***`.

    Examples:
        >>> mask_password("postgresql://bob:secret@db:5432/mt")
        'postgresql://bob:***@db:5432/mt'
    """
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class Closable(Protocol):
    def close(self) -> None: ...


R = TypeVar("R", bound=Closable)


class Session:
    """Settings, catalog, cache and stores of one mediatable connection."""

    def __init__(self, settings: Settings, progress_bars: ProgressBars | None = None) -> None:
        self.settings = settings
        create_home(settings.home)
        if settings.db_url is None:
            create_private_file(settings.home / "catalog.db")  # SQLite gives its WAL the same mode
        self.engine = create_engine(settings.catalog_url)
        self.catalog = Catalog(self.engine)
        self.stores = ObjectStores(settings)
        # One bounded stage for every download and upload of the session (DESIGN.md §3, io/transfer).
        self.transfers = TransferStage.from_settings(settings)
        self.progress_bars = progress_bars  # drawn by exec/status (above this layer); None: no bars
        self.cache = FileCache(settings, self.stores, self.transfers, self.progress_bars)
        self.presigner = Presigner(self.stores)
        self.media_store = MediaStore(settings.media_dir, ImageEncoding(settings.image_format, settings.image_quality))
        self.catalog.on_drop = self.media_store.remove_tables  # a dropped table's generated media go too
        self.providers = providers.Providers(settings)  # AI providers' clients, made on first use
        providers.activate(self.providers)
        self.uploads = Uploads(
            self.stores, self.transfers, self.cache, self.media_store, settings.media_dir / ".staging", progress_bars
        )
        self._resources: dict[str, Any] = {}
        self._resources_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Session(catalog={mask_password(self.settings.catalog_url)!r}, home={str(self.settings.home)!r})"

    def resource(self, key: str, build: Callable[[], R]) -> R:
        """The object stored under `key`, built by `build()` on first use and closed with the session.

        Examples:
            >>> import tempfile
            >>> from mediatable.config import load_settings
            >>> session = Session(load_settings(tempfile.mkdtemp(), environ={}))
            >>> import io
            >>> buffer = session.resource("demo", io.BytesIO)
            >>> session.resource("demo", io.BytesIO) is buffer
            True
            >>> session.close()
            >>> buffer.closed
            True
        """
        with self._resources_lock:
            found = self._resources.get(key)
            if found is None:
                found = self._resources[key] = build()
            return found  # type: ignore[no-any-return]

    def close(self) -> None:
        """Release what layers above built (worker processes), AI providers, connections and cache resources."""
        with self._resources_lock:
            resources, self._resources = list(self._resources.values()), {}
        for resource in reversed(resources):
            resource.close()
        providers.deactivate(self.providers)
        self.providers.close()
        self.uploads.close()
        self.transfers.close()  # cancels transfers still running; then leases and the index close
        self.cache.close()
        self.engine.dispose()

    @contextlib.contextmanager
    def cache_lease(self) -> Iterator[Any]:
        """A file-cache lease: files it fetched stay pinned (never evicted) until it closes."""
        with self.cache.lease() as lease:
            yield lease
