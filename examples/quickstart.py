"""mediatable quickstart: remote media as table columns, fetched lazily through the file cache.

Runs offline: it generates a few images and a video, serves them from a local HTTP server on
127.0.0.1 (standing in for S3/GCS/HTTPS), then walks through the recipe:

    python examples/quickstart.py
"""

from __future__ import annotations

import functools
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import PIL.Image

import mediatable as mt


def make_media(folder: Path) -> None:
    """A few JPEGs of different sizes and a 3-second MP4."""
    rng = np.random.default_rng(0)
    for name, size in [("cat.jpg", (640, 480)), ("dog.jpg", (800, 600)), ("bird.jpg", (320, 240))]:
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(folder / name, quality=85)
    with av.open(str(folder / "clip.mp4"), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i * 8, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the demo output readable
        pass


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        media, home = Path(tmp) / "media", Path(tmp) / "home"
        media.mkdir()
        make_media(media)
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(media)))
        server.request_queue_size = 128
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            run(base, home)
        finally:
            server.shutdown()
            server.server_close()


def run(base: str, home: Path) -> None:
    mt.init(home=home)
    mt.create_dir("cloud_demo", if_exists="ignore")

    print("\n# Load images from HTTP URLs (nothing is downloaded yet)")
    images = mt.create_table("cloud_demo.images", {"image": mt.Image, "label": mt.String}, if_exists="replace")
    print(images.insert([{"image": f"{base}/{n}.jpg", "label": n} for n in ("cat", "dog", "bird")]))

    print("\n# Add computed columns on remote media: files are fetched on first access, once")
    images.add_computed_column(width=images.image.width)
    images.add_computed_column(height=images.image.height)
    print(images.add_computed_column(thumb=images.image.thumbnail((128, 128))))
    print(images.where(images.width > 600).select(images.label, images.width, images.height).collect())

    print("\n# Videos, and a view with one row per frame (1 frame per second)")
    videos = mt.create_table("cloud_demo.videos", {"video": mt.Video}, if_exists="replace")
    print(videos.insert([{"video": f"{base}/clip.mp4"}]))
    videos.add_computed_column(duration=videos.video.duration)
    frames = mt.create_view("cloud_demo.frames", videos, iterator=mt.frames(videos.video, fps=1))
    frames.add_computed_column(entropy=frames.frame.entropy())
    print(frames.select(frames.pos, frames.timestamp, frames.entropy).collect())

    print("\n# Your own functions")

    @mt.udf
    def aspect(img: mt.Image) -> float:
        return round(img.width / img.height, 3)

    images.add_computed_column(aspect=aspect(images.image))
    print(images.select(images.label, images.aspect, url=images.thumb.fileurl).collect())
    print("\nSchema:\n" + images.describe())


if __name__ == "__main__":
    main()
