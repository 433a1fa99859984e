"""The session: everything one `mt.init()` builds, passed down instead of global singletons.

Lifecycle: `mt.init()` builds a :class:`Session` (settings, catalog engine, file cache, object
stores, media store) and makes it the current one; later calls of the module-level API use it.
`mt.init()` again replaces it (closing the old one). Nothing else is global.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from mediatable import types as ts
from mediatable.catalog.catalog import Catalog, check_choice, create_engine
from mediatable.catalog.table import Table
from mediatable.config import Settings
from mediatable.errors import AlreadyExists, InvalidArgument
from mediatable.exprs.base import ColumnRef
from mediatable.io.cache import FileCache
from mediatable.io.media_store import MediaStore
from mediatable.io.objects import ObjectStores
from mediatable.iterators import AudioChunkIterator, DocumentPageIterator, FrameIterator

ITERATORS: dict[str, Any] = {
    "frames": FrameIterator,
    "audio_chunks": AudioChunkIterator,
    "document_pages": DocumentPageIterator,
}


def mask_password(url: str) -> str:
    """A database URL with its password replaced by `***`.

    Examples:
        >>> mask_password("postgresql://bob:secret@db:5432/mt")
        'postgresql://bob:***@db:5432/mt'
    """
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class Session:
    """Settings, catalog, cache and stores of one mediatable connection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(settings.catalog_url)
        self.catalog = Catalog(self.engine)
        self.stores = ObjectStores(settings)
        self.cache = FileCache(settings, self.stores)
        self.media_store = MediaStore(settings.media_dir)

    def __repr__(self) -> str:
        return f"Session(catalog={mask_password(self.settings.catalog_url)!r}, home={str(self.settings.home)!r})"

    def close(self) -> None:
        """Release database connections and cache resources."""
        self.cache.close()
        self.engine.dispose()

    @contextlib.contextmanager
    def cache_lease(self) -> Iterator[Any]:
        """A file-cache lease: files it fetched stay pinned (never evicted) until it closes."""
        with self.cache.lease() as lease:
            yield lease

    def iterator_class(self, name: str) -> Any:
        return ITERATORS[name]

    # -- tables -------------------------------------------------------------------------------
    def create_table(self, path: str, schema: Mapping[str, Any], if_exists: str = "error") -> Table:
        if not isinstance(schema, Mapping) or not schema:
            raise InvalidArgument(
                "create_table() needs a schema: a dict of column name -> type, e.g. {'image': mt.Image}"
            )
        columns = {name: ts.as_column_type(t) for name, t in schema.items()}
        existing = self._existing(path, if_exists, "table")
        return existing or Table(self, self.catalog.create_table(path, columns))

    def _existing(self, path: str, if_exists: str, kind: str) -> Table | None:
        """Apply `if_exists` to `path`: the existing table to keep, or None to create it (anew)."""
        check_choice("if_exists", if_exists, ("error", "ignore", "replace"))
        if path not in self.catalog.list_tables():
            return None
        if if_exists == "ignore":
            return self.get_table(path)
        if if_exists == "replace":
            self.catalog.drop_table(path, force=True)
            return None
        raise AlreadyExists(f"{kind} {path!r} already exists (pass if_exists='ignore' or 'replace')")

    def create_view(self, path: str, base: Table, iterator: IteratorSpec, if_exists: str = "error") -> Table:
        if not isinstance(iterator, IteratorSpec):
            raise InvalidArgument("iterator= must be mt.frames(...), mt.audio_chunks(...) or mt.document_pages(...)")
        if iterator.source.column.owner_id not in base._meta.owner_ids():
            raise InvalidArgument(f"the iterator reads {iterator.source!r}, which is not a column of {base.path!r}")
        existing = self._existing(path, if_exists, "view")
        if existing is not None:
            return existing
        iterator_cls = ITERATORS[iterator.name]
        clashes = set(iterator_cls.output_schema) & set(base.columns)
        if clashes:
            raise AlreadyExists(f"the base table already has columns named {', '.join(sorted(clashes))}")
        spec = {
            "name": iterator.name,
            "source": iterator.source.column.name,
            "kwargs": iterator.kwargs,
            "outputs": list(iterator_cls.output_schema),
        }
        meta = self.catalog.create_table(path, dict(iterator_cls.output_schema), base=base._meta, iterator=spec)
        view = Table(self, meta)
        base_rows = list(base._query()._rows())
        if base_rows:
            with self.cache_lease() as lease:
                view._propagate(lease, base_rows, on_error=None)
        return view

    def get_table(self, path: str) -> Table:
        return Table(self, self.catalog.get_table(path))

    def drop_table(self, path: str | Table, if_not_exists: str = "error", force: bool = False) -> None:
        if isinstance(path, Table):
            path = path.path
        self.catalog.drop_table(path, if_not_exists=if_not_exists, force=force)


class IteratorSpec:
    """What `mt.frames(videos.video, fps=1)` returns: which iterator, over which column, with which options."""

    def __init__(self, name: str, source: ColumnRef, **kwargs: Any) -> None:
        if not isinstance(source, ColumnRef):
            raise InvalidArgument(f"{name}() takes a column of the base table, e.g. mt.{name}(videos.video)")
        self.name = name
        self.source = source
        self.kwargs = {k: v for k, v in kwargs.items() if v is not None}

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.name}({self.source!r}{options})"
