"""The demo's media, generated on the spot: labelled JPEGs (Pillow) and short MP4 clips (PyAV).

Everything is deterministic, so a second run produces the same bytes under the same URLs and
the file cache can serve it.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

__all__ = ["IMAGES", "VIDEOS", "make_image", "make_video"]

IMAGES = {"cat": (640, 480), "dog": (800, 600), "bird": (320, 240)}
"""Image name -> (width, height)."""
VIDEOS = {"sunrise": 3, "waves": 2}
"""Video name -> duration in seconds (10 frames per second, 320x240, H.264)."""


def make_image(path: Path, label: str, size: tuple[int, int]) -> Path:
    """A JPEG of `size` with a color gradient and `label` written on it.

    Examples:
        >>> import tempfile
        >>> make_image(Path(tempfile.mkdtemp()) / "cat.jpg", "cat", (64, 48)).stat().st_size > 0
        True
    """
    width, height = size
    seed = sum(label.encode())
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    base = np.array([(seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256], dtype=float)
    pixels = (base * (1 - x) + (255 - base) * y).clip(0, 255).astype(np.uint8)
    image = PIL.Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).copy())
    draw = PIL.ImageDraw.Draw(image)
    font = PIL.ImageFont.load_default(size=max(12, height // 5))
    draw.text((width // 10, height // 3), label, fill=(255, 255, 255), font=font)
    image.save(path, quality=85)
    return path


def make_video(path: Path, seconds: int, seed: int = 0) -> Path:
    """An MP4 (H.264, 10 fps, 320x240) of a moving bar, with its index at the front (`+faststart`).

    Examples:
        >>> import tempfile
        >>> make_video(Path(tempfile.mkdtemp()) / "clip.mp4", 1).stat().st_size > 0
        True
    """
    width, height, fps = 320, 240, 10
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            frame = np.full((height, width, 3), (seed * 40 + i * 4) % 256, dtype=np.uint8)
            left = (i * 8) % (width - 40)
            frame[:, left : left + 40] = (255, 200, 0)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path
