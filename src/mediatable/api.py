"""The module-level API: `mt.init()`, directories, tables, views. Uses the current :class:`Session`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mediatable.config import load_settings
from mediatable.exec.status import TransferBars, plural
from mediatable.exprs import Coalesce as _Coalesce
from mediatable.exprs import ColumnRef, Expr, IfElse
from mediatable.importers import ObjectListing
from mediatable.session import Session, mask_password
from mediatable.table import tables
from mediatable.table.table import Table
from mediatable.table.tables import IteratorSpec

_current: list[Session] = []  # the current session; a list so tests and init() can replace it


def init(
    home: str | Path | None = None,
    *,
    db_url: str | None = None,
    quiet: bool = False,
    **settings: Any,
) -> Session:
    """Connect to a catalog (by default an embedded SQLite database under `~/.mediatable`).

    Args:
        home: the home folder (catalog, file cache, generated media); default env `MEDIATABLE_HOME`
            or `~/.mediatable`.
        db_url: a SQLAlchemy URL, e.g. `postgresql://user@host/db` (default env `MEDIATABLE_DB_URL`).
        quiet: do not print the connection line.
        **settings: any :class:`~mediatable.config.Settings` field, e.g. `cache_size='5GiB'`.

    Returns:
        The new current :class:`Session`.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> session = mt.init(home=tempfile.mkdtemp(), quiet=True)
    """
    loaded = load_settings(home, db_url=db_url, **settings)
    session = Session(loaded, progress_bars=TransferBars(loaded))
    while _current:
        _current.pop().close()
    _current.append(session)
    if not quiet:
        print(f"Connected to mediatable catalog at: {mask_password(session.settings.catalog_url)}")
    return session


def _session() -> Session:
    if not _current:
        init()
    return _current[0]


def create_dir(path: str, if_exists: str = "error", parents: bool = False) -> None:
    """Create a directory (`a.b.c` nests). Prints `Created directory 'path'.`

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> mt.create_dir('cloud_demo', if_exists='ignore')
        Created directory 'cloud_demo'.
        >>> mt.create_dir('cloud_demo', if_exists='ignore')
        >>> mt.list_dirs()
        ['cloud_demo']
    """
    if _session().catalog.create_dir(path, if_exists=if_exists, parents=parents):
        print(f"Created directory {path!r}.")


def drop_dir(path: str, force: bool = False) -> None:
    """Drop a directory; with `force=True` also everything in it.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> mt.create_dir('scratch')
        Created directory 'scratch'.
        >>> mt.drop_dir('scratch')
        >>> mt.list_dirs()
        []
    """
    _session().catalog.drop_dir(path, force=force)


def list_dirs(parent: str | None = None) -> list[str]:
    """Directory paths (all, or those under `parent`)."""
    return _session().catalog.list_dirs(parent)


def list_tables(dir: str | None = None) -> list[str]:
    """Table and view paths (all, or those under directory `dir`).

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> mt.create_dir('demo')
        Created directory 'demo'.
        >>> _ = mt.create_table('demo.pets', {'name': mt.String})
        Created table 'pets'.
        >>> mt.list_tables('demo')
        ['demo.pets']
    """
    return _session().catalog.list_tables(dir)


def create_table(
    path: str,
    schema: Mapping[str, Any] | None = None,
    *,
    source: Any = None,
    schema_overrides: Mapping[str, Any] | None = None,
    if_exists: str = "error",
    primary_key: str | Sequence[str] | None = None,
    media_validation: str = "on_read",
) -> Table:
    """Create a table with typed columns, empty or from a source of rows.

    Args:
        path: `dir.name` (the directory must exist) or `name`.
        schema: column name -> type (`mt.Image`, `mt.String`, ...). With `source`, types for the
            columns it names (like `schema_overrides`); the others are inferred.
        source: rows to create the table from, their column types inferred: a `.csv` / `.tsv` /
            `.parquet` file, a pandas DataFrame, a pyarrow Table, a list or iterable of dicts, or
            :func:`list_objects`. Source column names that are not valid column names are converted
            (`'Image URL'` -> `image_url`). Rows go into a draft table moved into place at the end:
            if a row is rejected, no table is left behind and a table to be replaced stays as it was.
        schema_overrides: column name -> type instead of the inferred one, e.g. `{'image': mt.Image}`
            for a column of URLs (inferred as String).
        if_exists: 'error', 'ignore' (return the existing table, import nothing) or 'replace' (drop it first).
        primary_key: a column name or a list of them (composite key): rows are unique by it,
            `insert(..., on_conflict=...)` and `batch_update` use it.
        media_validation: 'on_read' (default: a media URL is first read when a query or computed
            column needs it) or 'on_write' (insert checks each media URL with a HEAD request and
            refuses the rows whose media cannot be reached, without downloading anything).

    Returns:
        The new :class:`Table`.

    Raises:
        InvalidArgument: no schema and no source, or overrides for columns the source lacks.
        DataError: the source cannot be read, or a value does not fit its column (names row and column).

    Examples:
        >>> import mediatable as mt, tempfile, pandas as pd
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> images = mt.create_table('images', {'image': mt.Image, 'label': mt.String})
        Created table 'images'.
        >>> images.columns
        ['image', 'label']
        >>> frame = pd.DataFrame({'url': ['https://example.com/a.jpg'], 'n': [3]})
        >>> t = mt.create_table('pics', source=frame, schema_overrides={'url': mt.Image})
        Created table 'pics'.
        Inserted 1 row with 0 errors.
        >>> repr(t).splitlines()[1:]
        ['  url     Image', '  n       Int']
    """
    existed = path in _session().catalog.list_tables()
    table = tables.create_table(
        _session(),
        path,
        schema,
        if_exists=if_exists,
        source=source,
        schema_overrides=schema_overrides,
        primary_key=primary_key,
        media_validation=media_validation,
    )
    if not existed or if_exists == "replace":
        print(f"Created table {table._meta.name!r}.")
        if source is not None:
            print(f"Inserted {plural(table.count(), 'row')} with 0 errors.")
    return table


def list_objects(
    prefix: str | Path,
    pattern: str | None = None,
    *,
    columns: Sequence[str] | Mapping[str, str] | None = None,
) -> ObjectListing:
    """The objects under a bucket prefix or local folder, as rows of `url, size, etag, last_modified`.

    Lazy and streamed page by page: `t.insert(mt.list_objects(...))` inserts a bucket of any size
    in bounded memory; iterating again lists again. Credentials and endpoints are those used for
    reading (see the README). `http(s)://` URLs cannot be listed.

    Args:
        prefix: `s3://bucket/folder/`, `gs://...`, `az://container/...`, `https://<account>.blob.core.windows.net/...`,
            `file://...` or a local folder; everything below it, at every depth.
        pattern: a shell pattern matched against the path below the prefix (`'*.jpg'`; `*` also matches `/`).
        columns: the fields to keep (`['url', 'size']`) or field -> column name (`{'url': 'image'}`).

    Returns:
        An iterable :class:`~mediatable.importers.listing.ObjectListing` of row dicts.

    Raises:
        UnsupportedScheme: an `http(s)://` or unknown prefix.
        MediaNotFound, MediaAccessDenied, MediaFetchError: while iterating, when listing fails.

    Examples:
        >>> import mediatable as mt, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / 'cat.jpg').write_bytes(b'not really a jpeg')
        >>> [(row['url'].endswith('/cat.jpg'), row['size']) for row in mt.list_objects(folder, '*.jpg')]
        [(True, 17)]
    """
    return ObjectListing(_session().stores, prefix, pattern=pattern, columns=columns)


def create_view(path: str, base: Table, *, iterator: IteratorSpec, if_exists: str = "error") -> Table:
    """Create a view with one row per item an iterator yields from each base row (e.g. video frames).

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> videos = mt.create_table('videos', {'video': mt.Video}, if_exists='replace')
        Created table 'videos'.
        >>> frames = mt.create_view('frames', videos, iterator=mt.frames(videos.video, fps=1))
        Created view 'frames' with 0 rows.
        >>> frames.columns
        ['video', 'pos', 'timestamp', 'frame']
    """
    view = tables.create_view(_session(), path, base, iterator, if_exists=if_exists)
    print(f"Created view {view._meta.name!r} with {view.count()} rows.")
    return view


def get_table(path: str) -> Table:
    """The table or view at `path`; `'path:N'` opens its version N, read-only. Raises TableNotFound.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> _ = mt.create_table('pets', {'name': mt.String})
        Created table 'pets'.
        >>> mt.get_table('pets').path
        'pets'
    """
    return tables.get_table(_session(), path)


def create_snapshot(path: str, table: Table) -> Table:
    """Freeze a table's (or view's) current version under a new path: a read-only table that costs no copy.

    While the snapshot exists, the versions it freezes cannot be reverted.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('pets', {'name': mt.String})
        Created table 'pets'.
        >>> _ = t.insert([{'name': 'Rex'}], quiet=True)
        >>> snap = mt.create_snapshot('pets_monday', t)
        >>> _ = t.insert([{'name': 'Tom'}], quiet=True)
        >>> snap.count(), t.count()
        (1, 2)
    """
    return tables.create_snapshot(_session(), path, table)


def move(path: str | Table, new_path: str) -> None:
    """Move (rename) a table, view, snapshot or directory; a directory takes everything in it along.

    Handles keep working: they know their table by id, not by path.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> mt.create_dir('old')
        Created directory 'old'.
        >>> _ = mt.create_table('old.pets', {'name': mt.String})
        Created table 'pets'.
        >>> mt.move('old', 'new')
        >>> mt.list_tables()
        ['new.pets']
    """
    tables.move(_session(), path, new_path)


def drop_table(path: str | Table, *, if_not_exists: str = "error", force: bool = False) -> None:
    """Drop a table or view (`force=True` also drops views over it).

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> _ = mt.create_table('pets', {'name': mt.String})
        Created table 'pets'.
        >>> mt.drop_table('pets')
        >>> mt.list_tables()
        []
    """
    tables.drop_table(_session(), path, if_not_exists=if_not_exists, force=force)


def frames(
    video: ColumnRef,
    *,
    fps: float | None = None,
    num_frames: int | None = None,
    keyframes_only: bool = False,
    size: tuple[int, int] | None = None,
) -> IteratorSpec:
    """Iterator over video frames: columns `pos`, `timestamp`, `frame` (Image).

    `size=(width, height)` stores small frames, each as `extract_frame(..., size=size)` makes it
    (converted at a reduced scale when the video is at least twice as large).

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> videos = mt.create_table('clips', {'video': mt.Video})
        Created table 'clips'.
        >>> mt.frames(videos.video, fps=1)
        frames(clips.video, fps=1)
    """
    return IteratorSpec(
        "frames",
        video,
        fps=fps,
        num_frames=num_frames,
        keyframes_only=keyframes_only or None,
        size=list(size) if size is not None else None,
    )


def audio_chunks(audio: ColumnRef, *, chunk_duration: float = 10.0, overlap: float = 0.0) -> IteratorSpec:
    """Iterator over audio chunks: columns `pos`, `start_time`, `end_time`, `audio_chunk` (Audio).

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> sounds = mt.create_table('sounds', {'audio': mt.Audio})
        Created table 'sounds'.
        >>> mt.audio_chunks(sounds.audio, chunk_duration=5.0)
        audio_chunks(sounds.audio, chunk_duration=5.0)
    """
    return IteratorSpec("audio_chunks", audio, chunk_duration=chunk_duration, overlap=overlap or None)


def document_pages(document: ColumnRef) -> IteratorSpec:
    """Iterator over PDF pages: columns `pos`, `page`, `text`.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> docs = mt.create_table('docs', {'pdf': mt.Document})
        Created table 'docs'.
        >>> mt.document_pages(docs.pdf)
        document_pages(docs.pdf)
    """
    return IteratorSpec("document_pages", document)


def if_else(condition: Any, then: Any, otherwise: Any) -> Expr:
    """`then` where `condition` is True, else `otherwise`.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('sizes', {'w': mt.Int})
        Created table 'sizes'.
        >>> _ = t.insert([{'w': 50}, {'w': 500}], quiet=True)
        >>> t.select(size=mt.if_else(t.w > 100, 'big', 'small')).collect()['size']
        ['small', 'big']
    """
    return IfElse(condition, then, otherwise)


def coalesce(*values: Any) -> Expr:
    """The first value that is not None.

    Examples:
        >>> import mediatable as mt, tempfile
        >>> _ = mt.init(home=tempfile.mkdtemp(), quiet=True)
        >>> t = mt.create_table('files', {'title': mt.String, 'filename': mt.String})
        Created table 'files'.
        >>> _ = t.insert([{'title': None, 'filename': 'a.jpg'}, {'title': 'B', 'filename': 'b.jpg'}], quiet=True)
        >>> t.select(name=mt.coalesce(t.title, t.filename)).collect()['name']
        ['a.jpg', 'B']
    """
    return _Coalesce(*values)
