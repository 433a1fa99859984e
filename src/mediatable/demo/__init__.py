"""`mediatable demo` (and `make demo`): the cloud-media recipe end to end.

Offline by default: it generates images and videos, serves the images from a web server on
127.0.0.1 and the videos from a local S3-compatible server (moto, from `pip install
'mediatable[demo]'`), runs :func:`mediatable.demo.recipe.run` against them and stops both servers.
With `cloud=True` it reads public data instead (images over HTTPS from GitHub, videos from the
public `multimedia-commons` S3 bucket; needs internet).

Examples:
    >>> # mediatable.demo.main(home='/tmp/mt-demo')         # what `mediatable demo --home /tmp/mt-demo` runs
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mediatable.demo import media, recipe, servers

__all__ = ["CLOUD_IMAGES", "CLOUD_VIDEOS", "main"]

DEMO_BUCKET = "mediatable-demo"
CLOUD_IMAGES = [
    f"https://raw.githubusercontent.com/pixeltable/pixeltable/main/docs/resources/images/{name}.jpg"
    for name in ("000000000036", "000000000090", "000000000106")
]
"""Public images used by `mediatable demo --cloud`."""
CLOUD_VIDEOS = "s3://multimedia-commons/data/videos/mp4/ffe/ff3/"
"""A prefix of the public Multimedia Commons bucket (us-west-2; anonymous without AWS credentials), for `--cloud`."""


def main(home: str | Path | None = None, *, cloud: bool = False, http_port: int = servers.HTTP_PORT) -> None:
    """Run the demo; the catalog and file cache live in `home` (default: `MEDIATABLE_HOME` or `~/.mediatable`).

    Args:
        home: the mediatable home to use; a second run with the same home is served by its file cache.
        cloud: read public cloud data instead of starting local servers (needs internet).
        http_port: the local web server's port; keep it from run to run so image URLs stay the same.
    """
    with tempfile.TemporaryDirectory(prefix="mediatable-demo-") as tmp:
        workdir = Path(tmp)
        if cloud:
            sources = recipe.Sources(
                images=[(url.rsplit("/", 1)[1].removesuffix(".jpg"), url) for url in CLOUD_IMAGES],
                videos_prefix=CLOUD_VIDEOS,
                workdir=workdir,
                settings={"buckets": {"s3://multimedia-commons": {"region": "us-west-2"}}},
            )
            recipe.run(sources, home)
            return
        served = workdir / "www"
        served.mkdir()
        for label, size in media.IMAGES.items():
            media.make_image(served / f"{label}.jpg", label, size)
        videos = {
            f"videos/{name}.mp4": media.make_video(workdir / f"{name}.mp4", seconds, seed=i)
            for i, (name, seconds) in enumerate(media.VIDEOS.items())
        }
        with servers.http_server(served, http_port) as base, servers.s3_server(DEMO_BUCKET, videos) as endpoint:
            print(f"Serving {len(media.IMAGES)} images at {base}/ and {len(videos)} videos in s3://{DEMO_BUCKET}/")
            print(f"(a local S3-compatible server at {endpoint}, found through AWS_ENDPOINT_URL)")
            # The standard variables, as for any S3-compatible store; restored when the demo ends.
            aws = {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": servers.S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": servers.S3_SECRET_KEY,
                "AWS_REGION": servers.S3_REGION,
                "AWS_ALLOW_HTTP": "true",
            }
            with servers.scoped_env(aws):
                sources = recipe.Sources(
                    images=[(label, f"{base}/{label}.jpg") for label in media.IMAGES],
                    videos_prefix=f"s3://{DEMO_BUCKET}/videos/",
                    workdir=workdir,
                    destination=f"s3://{DEMO_BUCKET}/thumbnails/",
                )
                recipe.run(sources, home)
