"""Warming the cache: download a list of objects ahead of a job, as many as the budget holds.

:func:`warm` (what :meth:`FileCache.warm <mediatable.io.cache.FileCache.warm>` runs) learns every
object's size first — from the index for what is cached already, from one HEAD request each
otherwise, all through the transfer stage — then downloads, in the order given, the objects that
fit in ``settings.cache_size`` together, with a progress bar of objects and bytes. What does not
fit is not downloaded (it would only evict what was just fetched) and is reported, as are objects
that cannot be reached.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

from mediatable.errors import MediaError
from mediatable.io import fetch
from mediatable.io.cache.core import Core
from mediatable.io.cache.info import human_size
from mediatable.io.cache.lease import Lease
from mediatable.io.urls import MediaUrl, redact_url

__all__ = ["Warmed", "warm"]


@dataclasses.dataclass(frozen=True)
class Warmed:
    """What :meth:`FileCache.warm <mediatable.io.cache.FileCache.warm>` did.

    Attributes:
        files: objects now cached whole (downloaded now, or already there).
        bytes: their total size.
        already_cached: how many of ``files`` were cached before.
        downloaded_bytes: bytes downloaded by this call.
        not_fitting: objects left out because the budget could not hold them too.
        not_fitting_bytes: their total size.
        local: local files (read in place, never cached).
        failed: redacted URL -> why it could not be read (or sized).
        budget: the cache's budget (``settings.cache_size``).

    Examples:
        >>> for part in str(Warmed(3, 3 * 1024**2, 1, 2 * 1024**2, 1, 5 * 1024**3, 0, {}, 4 * 1024**3)).split("; "):
        ...     print(part)
        3 files in the cache (3.0 MiB, 2.0 MiB downloaded now, 1 already there)
        1 file (5.0 GiB) did not fit in the cache's 4.0 GiB
    """

    files: int
    bytes: int
    already_cached: int
    downloaded_bytes: int
    not_fitting: int
    not_fitting_bytes: int
    local: int
    failed: dict[str, str]
    budget: int

    def __str__(self) -> str:
        text = (
            f"{_files(self.files)} in the cache ({human_size(self.bytes)}, "
            f"{human_size(self.downloaded_bytes)} downloaded now, {self.already_cached} already there)"
        )
        if self.not_fitting:
            text += (
                f"; {_files(self.not_fitting)} ({human_size(self.not_fitting_bytes)}) did not fit in the "
                f"cache's {human_size(self.budget)}"
            )
        if self.local:
            text += f"; {_files(self.local)} local (read in place)"
        if self.failed:
            text += f"; {len(self.failed)} failed: " + "; ".join(
                f"{url}: {why}" for url, why in list(self.failed.items())[:5]
            )
            if len(self.failed) > 5:
                text += f"; and {len(self.failed) - 5} more"
        return text


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def warm(core: Core, lease: Lease, urls: Iterable[str | os.PathLike[str]], progress: bool | None) -> Warmed:
    """Download ``urls`` (in order, each once) as far as the budget holds them; see the module docstring."""
    order: dict[str, MediaUrl] = {}
    local = 0
    failed: dict[str, str] = {}
    for raw in urls:
        try:
            mu = core.parse(raw)
        except MediaError as error:
            failed[redact_url(str(raw))] = str(error)
            continue
        if mu.kind == "file":
            local += 1
        else:
            order.setdefault(mu.cache_key, mu)
    cached = {url: entry.size for url, entry in core.lookup_many(list(order)).items()}
    unknown = [mu for url, mu in order.items() if url not in cached]
    stall = core.stage.stall
    futures = core.stage.submit_many(
        [core.stage.run(mu, lambda mu=mu: fetch.head_attempt(core.stores, mu, stall=stall)) for mu in unknown]
    )
    sizes = dict(cached)
    for mu, future in zip(unknown, futures, strict=True):
        try:
            sizes[mu.cache_key] = future.result().size
        except MediaError as error:
            failed[redact_url(mu.url)] = str(error)
    budget = core.budget.budget
    chosen: list[str] = []
    total = 0
    not_fitting = not_fitting_bytes = 0
    for url in order:
        size = sizes.get(url)
        if size is None:
            continue
        if total + size > budget:
            not_fitting += 1
            not_fitting_bytes += size
            continue
        chosen.append(url)
        total += size
    before = core.stats.bytes_downloaded
    fetched = 0
    # Downloads use the URLs as given (signatures and all); `chosen` holds their cache keys.
    for url, got in zip(chosen, lease.get_many([order[key] for key in chosen], progress=progress), strict=True):
        if isinstance(got, MediaError):
            failed[redact_url(url)] = str(got)
            total -= sizes[url]
        else:
            fetched += 1
    return Warmed(
        files=fetched,
        bytes=total,
        already_cached=sum(1 for url in chosen if url in cached),
        downloaded_bytes=core.stats.bytes_downloaded - before,
        not_fitting=not_fitting,
        not_fitting_bytes=not_fitting_bytes,
        local=local,
        failed=failed,
        budget=budget,
    )
