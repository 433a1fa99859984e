"""The file cache: remote media as local files, shared by every thread and process on the machine.

Use :class:`FileCache` (one per session) and its :class:`Lease` objects; everything else in this
package is private. The contract:

**Key and layout.** One entry per object: the normalized URL (:func:`~mediatable.io.urls.parse_url`:
case, ports, escapes, ``.``/``..`` of http(s) paths) without the signing parameters of presigned
URLs (:attr:`~mediatable.io.urls.MediaUrl.cache_key`; the download still uses the full URL). A file
is ``<cache_dir>/ab/<sha256(key)>.<ext>`` with the original extension (decoders sniff it); a newer
version gets ``<sha256(key)>~<id>.<ext>``. A SQLite index (WAL, ``0600``) at
``<cache_dir>/index.db``, shared by every process, records key, path, size, ETag, last-modified,
sha256 of the content, created and last access. ``file://`` URLs and local paths are read in
place, never copied. Layout::

    index.db                       SQLite (WAL): entries, totals, reserved space, owners
    ab/<sha256(key)>.<ext>         cached files
    tmp/<name>.<owner>-<n>.part    downloads in progress
    locks/entries.lock             byte-range locks: one byte per URL being downloaded (exclusive)
    locks/pins.<xx>.lock           ... one byte per URL some lease holds (shared) or an evictor deletes
    locks/owners.<xx>.lock         ... one byte per open cache object, held for its whole life
    leases/<owner>-<token>/        files a lease fetched without caching them (too big for the budget)

**Single flight.** N threads and N processes asking for one uncached object cause one download; the
others wait and then read the finished file. In a process, requests share one future. Across
processes, the downloader holds the URL's entry lock for the whole transfer and until its index row
is committed; a waiter takes the lock, then looks again. Waits for locks run on threads of their
own, never in a bounded pool that the work ending them needs too. Every lock here is a kernel lock
(Linux open-file-description locks; ``flock`` of one file per key elsewhere): the kernel drops it
when its holder dies, even by SIGKILL.

**Atomic publish.** A download streams into a temp file in ``tmp/`` (same file system, so the final
rename is atomic), checks the length against the announced size, records the sha256, renames it to
a name no other file has and only then writes the index row. A crash at any point leaves no visible
entry. What a dead cache object left (temp files, reserved space, lease folders) names its owner,
and an owner is dead once its owner lock is free: the next cache object to open (and ``prune``)
removes it, whatever became of the process id (pid reuse, other containers sharing the folder).

**Budget and eviction.** The bytes of all entries plus the space reserved for downloads in flight
never exceed ``settings.cache_size``. Making room evicts entries by least recent access (recorded
to 10 s). A file a :class:`Lease` holds is pinned: a shared lock on its key, taken before the file
is handed out and visible to every process at once; an evictor deletes an entry only while holding
that key exclusively. ``Lease.get`` pins until the lease closes; ``Lease.get_many`` keeps the files
it handed out pinned up to half the budget (a window sliding over a scan larger than the cache). An
object larger than the budget, or one that cannot get room because everything is pinned, is still
readable: it streams to a file private to the lease, is not cached, and is deleted when the lease
closes. When a lease downloads again files it evicted itself, a :class:`CacheThrashingWarning`
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

**Freshness and damage.** With ``cache_validation='etag'`` the first access of a URL in each lease
sends a HEAD request and downloads again when the object changed (a stale file is never served; an
object that vanished raises MediaNotFound); the new version never overwrites the file a lease
elsewhere may be reading. With ``'never'`` (the default) a cached file is served without a request.
Either way a hit checks the file's size against the index: a file truncated or replaced behind the
cache's back is dropped and fetched again; :meth:`FileCache.verify` (``mediatable cache verify``)
checks every entry's size and content hash.

**Threads, processes, speed.** Every method of ``FileCache`` and ``Lease`` is thread-safe; any
number of processes may share one folder. Downloads run on the session's
:class:`~mediatable.io.transfer.TransferStage` (one event-loop thread, at most
``settings.max_concurrent_downloads`` transfers at once, retries, stall detection). A warm hit is a
dict lookup in an in-process memo, a pin (one system call, only for the first lease of the process
holding the file) and a ``stat``; access times are written in the background, many per
transaction.

Modules: ``cache`` (FileCache), ``lease`` (Lease), ``holding`` (what one lease holds), ``core``
(shared state, serving hits), ``download`` (download and publish), ``ranged`` (opening objects for
ranged reads, RemoteObject), ``blocks`` (block keys, file format, version-pinned ranged GETs),
``budget`` (space and eviction), ``pins`` (pins and access times), ``entries`` (names and
versions), ``index`` (SQLite), ``locks`` (kernel locks), ``sweep`` (crash leftovers, damage,
verify), ``info`` (reports), ``warm`` (downloading ahead within the budget).
"""

from mediatable.io.cache.cache import FileCache
from mediatable.io.cache.info import CacheInfo, CacheThrashingWarning, Pruned
from mediatable.io.cache.lease import Lease
from mediatable.io.cache.ranged import RemoteObject
from mediatable.io.cache.sweep import Verified
from mediatable.io.cache.warm import Warmed

__all__ = ["CacheInfo", "CacheThrashingWarning", "FileCache", "Lease", "Pruned", "RemoteObject", "Verified", "Warmed"]
