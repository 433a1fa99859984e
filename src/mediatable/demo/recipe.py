"""The recipe itself: remote media as table columns, fetched lazily through the file cache.

:func:`run` walks through the steps of the "load media from S3 and other cloud storage" recipe
with whatever :class:`Sources` it is given — local servers (`mediatable demo`) or public buckets
(`mediatable demo --cloud`) — and prints what each step reports.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

import mediatable as mt
from mediatable.io.cache.info import human_size
from mediatable.io.urls import redact_url

__all__ = ["Sources", "run"]


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where the recipe's media lives.

    Attributes:
        images: (label, URL) of each image, e.g. served over HTTP(S).
        videos_prefix: a bucket prefix holding MP4 videos, listed with :func:`mediatable.list_objects`.
        max_videos: how many of the listed videos to use.
        workdir: a folder for the CSV file the recipe writes and imports.
        settings: extra settings for `mt.init()` (per-bucket options).
        destination: where the thumbnail column writes its images (a bucket prefix), or None for
            `<home>/media`.
    """

    images: list[tuple[str, str]]
    videos_prefix: str
    workdir: Path
    max_videos: int = 2
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    destination: str | None = None


def section(title: str, note: str = "") -> None:
    print(f"\n== {title}" + (f"\n   {note}" if note else ""))


def fetch_one(videos: mt.Table) -> None:
    """GET the first video's presigned URL with a plain HTTP client, as a browser or video player would."""
    row = videos.select(videos.name, videos.url, error=videos.url.errormsg).limit(1).collect()[0]
    if row["url"] is None:
        print(f"No presigned URL for {row['name']}: {row['error']}")
        return
    with urllib.request.urlopen(row["url"], timeout=60) as response:
        size = len(response.read())
        print(f"GET {redact_url(row['url'])} -> HTTP {response.status}, {size:,} bytes of {row['name']}.mp4")
    names = ", ".join(sorted(urllib.parse.parse_qs(urllib.parse.urlsplit(row["url"]).query)))
    print(f"(signed with {names}; values hidden: a presigned URL is a secret until it expires)")


def run(sources: Sources, home: str | Path | None = None) -> None:
    """Run the recipe against `sources` with the catalog and file cache in `home`."""
    session = mt.init(home=home, **sources.settings)
    mt.create_dir("cloud_demo", if_exists="ignore")

    section("Load images from HTTP URLs", "Inserting stores the references; nothing is downloaded yet.")
    images = mt.create_table("cloud_demo.images", {"image": mt.Image, "label": mt.String}, if_exists="replace")
    print(images.insert([{"image": url, "label": label} for label, url in sources.images]))

    section("Load videos from S3", f"Listing {sources.videos_prefix} with mt.list_objects(..., pattern='*.mp4').")
    listing = mt.list_objects(sources.videos_prefix, pattern="*.mp4", columns={"url": "video"})
    found = list(itertools.islice(listing, sources.max_videos))
    for row in found:
        row["name"] = PurePosixPath(row["video"]).stem
    videos = mt.create_table("cloud_demo.videos", {"video": mt.Video, "name": mt.String}, if_exists="replace")
    print(videos.insert(found))

    section("Add computed columns on remote media", "Files are fetched on first access, once, through the cache.")
    print(images.add_computed_column(width=images.image.width, height=images.image.height))
    print(videos.add_computed_column(duration=videos.video.duration))

    section("Extract frames from videos", "A view with one row per frame (1 frame per second).")
    frames = mt.create_view("cloud_demo.frames", videos, iterator=mt.frames(videos.video, fps=1))
    print(frames.add_computed_column(entropy=frames.frame.entropy()))

    section("Generate presigned URLs for serving media", "Time-limited links to the videos, signed on this machine.")
    print(videos.add_computed_column(url=mt.functions.presigned_url(videos.video, expiration_seconds=3600)))
    fetch_one(videos)

    if sources.destination:
        section("Upload generated media to S3", f"A thumbnail column written to {sources.destination}.")
    else:
        section("Thumbnails", "Generated media is stored under <home>/media and referenced by URL.")
    thumbnail = images.image.thumbnail((128, 128))
    print(images.add_computed_column(thumb=thumbnail, destination=sources.destination))
    if sources.destination:
        stored = list(mt.list_objects(sources.destination))
        print(f"{len(stored)} objects in {sources.destination} ({human_size(sum(row['size'] for row in stored))})")

    section("Import from CSV", "A table created from a CSV of URLs; the same files come from the cache.")
    csv_path = sources.workdir / "urls.csv"
    with csv_path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "label"])
        writer.writerows((url, label) for label, url in sources.images)
    from_csv = mt.create_table(
        "cloud_demo.from_csv", source=csv_path, schema_overrides={"image": mt.Image}, if_exists="replace"
    )
    print(from_csv.add_computed_column(width=from_csv.image.width))

    section("Results")
    print(images.select(images.label, images.width, images.height, thumb=images.thumb.fileurl).collect())
    print()
    print(frames.select(frames.name, frames.pos, frames.timestamp, frames.entropy).collect())

    section("File cache")
    info = session.cache.info()
    print(info)
    reads = info.hits + info.misses
    if info.misses:
        print(
            f"This run downloaded {info.misses} files ({human_size(info.bytes_downloaded)}); "
            f"{info.hits} of {reads} reads came from the cache."
        )
    else:
        print(f"This run downloaded nothing: all {reads} reads came from the cache.")
