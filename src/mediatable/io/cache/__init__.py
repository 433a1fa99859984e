"""The file cache: remote media as local files, shared by every thread and process on the machine.

Use :class:`FileCache` (one per session) and its :class:`Lease` objects; everything else in this
package is private. The contract:

**Key and layout.** One entry per normalized URL (:func:`~mediatable.io.urls.parse_url`), stored
as ``<cache_dir>/ab/<sha256(url)>.<ext>`` with the original extension (decoders sniff it). A
SQLite index (WAL mode, busy timeout) at ``<cache_dir>/index.db``, shared by every process on the
machine, records url, path, size, ETag, last-modified, created and last access. ``file://`` URLs
and local paths are read in place, never copied. Layout::

    index.db                       SQLite (WAL): entries, totals, pins, reserved space, owners
    ab/<sha256(url)>.<ext>         cached files
    tmp/<name>.<pid>-<id>.part     downloads in progress
    locks/entries.lock             byte-range locks, one byte per URL being downloaded (Linux)
    leases/<pid>-<token>/          files a lease fetched without caching them (too big for the budget)

**Single flight.** N threads and N processes asking for one uncached URL cause one download; the
others wait and then read the finished file. In a process, requests for a URL share one future.
Across processes, the downloader holds an exclusive lock on the URL for the whole transfer and until
its index row is committed; a waiter takes the lock, then looks again. The lock is a kernel lock on
one byte (at an offset from the URL's hash) of ``locks/entries.lock`` (Linux open-file-description
locks; ``flock`` of ``locks/<sha256>.lock`` elsewhere): the kernel drops it when its holder dies,
even by SIGKILL, and waiters sleep in the kernel instead of polling.

**Atomic publish.** A download streams into a temp file in ``tmp/`` (same file system, so the final
rename is atomic) under an exclusive ``flock``, checks the length against the announced size,
renames it to its final name and only then writes the index row. A crash at any point leaves no
visible entry. Opening a cache (and :meth:`FileCache.prune`) removes what dead processes left:
temp files, reserved space, pins, lease folders; a file without an entry is deleted by ``prune``.

**Budget and eviction.** The bytes of all entries plus the space reserved for downloads in flight
never exceed ``settings.cache_size``. Making room evicts entries by least recent access (recorded
to 10 s). Files held by a :class:`Lease` are pinned and never evicted. An object larger than the
budget, or one that cannot get room because everything is pinned, is still readable: it streams to
a file private to the lease, is not cached, and is deleted when the lease closes. A lease keeps its
recent files pinned up to half the budget and unpins older ones, so a scan larger than the cache
works; when a lease downloads again files it evicted itself, a :class:`CacheThrashingWarning`
names a size.

**Blocks of large objects.** :meth:`Lease.get_ranged` (and ``get_many(..., ranged=...)``) opens
an object of at least ``settings.min_ranged_size`` bytes that is not cached whole as a
:class:`RemoteObject`: a seekable file (``.open()``) whose blocks (``settings.block_size``) are
fetched on demand by ranged GETs through the transfer stage, read ahead on sequential access,
and kept as ordinary entries keyed ``block:<sha256(url)>/<size>/<version>/<block size>/<index>``:
the same budget, LRU, pins, single flight across threads and processes, and crash safety. The
object's version (ETag, else size and date) is pinned when it is opened: every range request
carries ``If-Match`` and its answer is checked, so a change mid-read is
:class:`~mediatable.errors.MediaChanged`, never bytes of two versions. Each block file ends with a
CRC32C of its bytes, checked whenever it is read back; a damaged block is fetched again. A whole
download of an object copies its cached blocks and fetches only the gaps; a whole copy serves
every ranged open. Servers that answer ``Range`` with the whole object are detected on the first
request and the object is downloaded whole. Smaller objects cost one request, as whole downloads do.

**Freshness.** Entries record ETag, last-modified and size. With ``cache_validation='etag'`` the
first access of a URL in each lease sends a HEAD request and downloads again when the object
changed (a stale file is never served; an object that vanished raises MediaNotFound). With
``'never'`` (the default) a cached file is served without any request.

**Threads, processes, speed.** Every method of ``FileCache`` and ``Lease`` is thread-safe; any
number of processes may share one folder. Downloads run on the session's
:class:`~mediatable.io.transfer.TransferStage` (one event-loop thread, at most
``settings.max_concurrent_downloads`` transfers at once, retries). A warm hit is a dict lookup in
an in-process memo checked with ``os.path.exists``; access times and pins are written in the
background, many per transaction: a hit costs a few microseconds.

Modules: ``cache`` (FileCache), ``lease`` (Lease), ``holding`` (what one lease holds), ``core``
(shared state and lookups), ``download`` (download and publish), ``ranged`` (opening objects for
ranged reads, RemoteObject), ``blocks`` (block keys, file format, version-pinned ranged GETs), ``budget`` (space and
eviction), ``pins`` (pins and access times), ``entries`` (names and versions), ``index`` (SQLite),
``locks`` (entry locks), ``sweep`` (crash leftovers), ``info`` (reports), ``warm`` (downloading
ahead within the budget).
"""

from mediatable.io.cache.cache import FileCache
from mediatable.io.cache.info import CacheInfo, CacheThrashingWarning, Pruned
from mediatable.io.cache.lease import Lease
from mediatable.io.cache.ranged import RemoteObject
from mediatable.io.cache.warm import Warmed

__all__ = ["CacheInfo", "CacheThrashingWarning", "FileCache", "Lease", "Pruned", "RemoteObject", "Warmed"]
