"""Object-store access: one obstore store per bucket and credentials, errors translated in one place.

:class:`ObjectStores` turns a :class:`~mediatable.io.urls.MediaUrl` into an obstore store plus the
object's path, building each store once (a build costs ~3 ms and owns a connection pool) and
reusing it from every thread. Credentials come from the standard places, checked each time a URL is
resolved, so a changed environment gets a new store. One module per job:

- `stores`: :class:`ObjectStores` (resolve, head, upload, credential descriptions) and the store cache;
- `aws`, `gcs`, `azure`, `http`: each cloud's credential chain and endpoints (their docstrings list
  the order in which sources are tried);
- `options`: per-bucket settings (`[buckets."s3://name"]` in `config.toml`, obstore's own key names,
  winning over everything else; `anonymous = true|false` forces or forbids unsigned requests) and
  HTTP client options;
- `errors`: :func:`translate_error`, which maps obstore's failures onto :mod:`mediatable.errors` and
  scrubs secrets from messages (signed URLs and error bodies appear in them verbatim).

obstore's own retries are off: the retry policy lives in `io/fetch.py`.
"""

from mediatable.io.objects.errors import translate_error
from mediatable.io.objects.stores import Credentials, ObjectInfo, ObjectStores

__all__ = ["Credentials", "ObjectInfo", "ObjectStores", "translate_error"]
