"""Media validation at the door (`media_validation='on_write'`): one HEAD request per media URL of the
rows about to be inserted, with bounded concurrency and the download retry policy; no body is read."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from typing import Any

from mediatable.catalog.model import TableMeta
from mediatable.errors import MediaError
from mediatable.io import fetch
from mediatable.io.urls import parse_url
from mediatable.session import Session


def unreachable(
    session: Session, meta: TableMeta, rows: Sequence[dict[str, Any]], first_index: int
) -> dict[int, list[str]]:
    """Input row number -> why its media cannot be reached (row, column and redacted URL), for failing rows only."""
    media = [c.name for c in meta.own_columns.values() if c.col_type.is_media and not c.is_computed]
    cells = [
        (index, name, row[name])
        for index, row in enumerate(rows, start=first_index)
        for name in media
        if isinstance(row.get(name), str)
    ]
    if not cells:
        return {}
    policy = fetch.RetryPolicy.from_settings(session.settings)
    limit = session.settings.max_concurrent_downloads

    async def check_all() -> list[BaseException | None]:
        slots = asyncio.Semaphore(limit)

        async def check(url: str) -> None:
            async with slots:
                await fetch.head_async(session.stores, parse_url(url), policy=policy)

        return await asyncio.gather(*(check(url) for _, _, url in cells), return_exceptions=True)

    # A thread of its own: the caller may already run an event loop (notebooks).
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mediatable-validate") as pool:
        results = pool.submit(asyncio.run, check_all()).result()
    failures: dict[int, list[str]] = {}
    for (index, name, _), result in zip(cells, results, strict=True):
        if isinstance(result, MediaError):
            failures.setdefault(index, []).append(f"row {index}, column {name!r}: {type(result).__name__}: {result}")
        elif isinstance(result, BaseException):
            raise result
    return failures
