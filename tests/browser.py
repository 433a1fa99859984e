"""Headless Chromium (Debian's `chromium`) for tests that look at HTML the way a person would: a screenshot."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image


def screenshot(html: str, folder: Path, size: tuple[int, int] = (900, 700)) -> PIL.Image.Image:
    """Render `html` (a page of its own, no network) and return the screenshot as an RGB image."""
    binary = shutil.which("chromium")
    if binary is None:
        raise RuntimeError("chromium is not installed (make test installs it: apt-get install -y chromium)")
    page = folder / "page.html"
    page.write_text(f"<!doctype html><html><body style='margin:8px;background:#fff'>{html}</body></html>")
    out = folder / "shot.png"
    with tempfile.TemporaryDirectory(prefix="mt-chromium-") as profile:
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={out}",
            page.as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if not out.exists():
        raise RuntimeError(f"chromium made no screenshot (exit {result.returncode}): {result.stderr[-2000:]}")
    with PIL.Image.open(out) as image:
        return image.convert("RGB")


def count_pixels(image: PIL.Image.Image, color: tuple[int, int, int], tolerance: int = 40) -> int:
    """Pixels within `tolerance` (per channel) of `color`."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - np.array(color, dtype=np.int16)) <= tolerance).all(axis=2).sum())
