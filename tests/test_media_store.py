"""Generated media: how images are encoded (global setting, per column), where files go (io/media_store.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import mediagen
import mediatable as mt
from mediatable.config import load_settings
from mediatable.errors import ConfigError
from mediatable.io.media_store import ImageEncoding, MediaStore


def local(url: str) -> Path:
    assert url.startswith("file://")
    return Path(url[len("file://") :])


def image_format(path: str) -> str | None:
    with PIL.Image.open(path) as img:
        return img.format


def photo() -> PIL.Image.Image:
    return PIL.Image.fromarray(mediagen.photo_pixels((320, 240)), "RGB")


@pytest.mark.parametrize(
    ("encoding", "mode", "expected_format", "expected_mode"),
    [
        (ImageEncoding(), "RGB", "JPEG", "RGB"),
        (ImageEncoding(), "L", "JPEG", "L"),
        (ImageEncoding(), "RGBA", "PNG", "RGBA"),  # alpha keeps PNG
        (ImageEncoding(), "LA", "PNG", "LA"),
        (ImageEncoding(), "P", "PNG", "P"),
        (ImageEncoding("webp"), "RGB", "WEBP", "RGB"),
        (ImageEncoding("webp"), "RGBA", "WEBP", "RGBA"),  # WebP keeps the alpha band
        (ImageEncoding("webp"), "I;16", "PNG", "I;16"),  # a mode WebP cannot hold
        (ImageEncoding("png"), "RGB", "PNG", "RGB"),
    ],
)
def test_formats_by_mode(
    tmp_path: Path, encoding: ImageEncoding, mode: str, expected_format: str, expected_mode: str
) -> None:
    store = MediaStore(tmp_path)
    url = store.save(PIL.Image.new(mode, (8, 6)), 3, "thumb", encoding)
    path = local(url)
    assert path.parent == tmp_path / "3" / "thumb"
    with PIL.Image.open(path) as img:
        assert (img.format, img.mode, img.size) == (expected_format, expected_mode, (8, 6))


def test_alpha_survives_exactly(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    image = PIL.Image.fromarray(pixels, "RGBA")
    for encoding in (ImageEncoding(), ImageEncoding("png")):
        with PIL.Image.open(local(MediaStore(tmp_path).save(image, 1, "c", encoding))) as back:
            assert np.array_equal(np.asarray(back), pixels)
    with PIL.Image.open(local(MediaStore(tmp_path).save(image, 1, "c", ImageEncoding("webp")))) as back:
        assert np.array_equal(np.asarray(back)[:, :, 3], pixels[:, :, 3])  # lossy colors, exact alpha


def test_quality_changes_the_bytes(tmp_path: Path) -> None:
    image = photo()
    store = MediaStore(tmp_path)
    sizes = {q: local(store.save(image, 1, "c", ImageEncoding("jpeg", q))).stat().st_size for q in (30, 90)}
    assert sizes[30] < sizes[90]
    webp = {q: local(store.save(image, 1, "c", ImageEncoding("webp", q))).stat().st_size for q in (30, 90)}
    assert webp[30] < webp[90]


def test_bad_encodings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(mt.InvalidArgument, match="format"):
        ImageEncoding("gif")
    with pytest.raises(mt.InvalidArgument, match="quality"):
        ImageEncoding("jpeg", 0)
    with pytest.raises(ConfigError, match="image_format"):
        load_settings(tmp_path, environ={"MEDIATABLE_IMAGE_FORMAT": "tiff"})
    with pytest.raises(ConfigError, match="image_quality"):
        load_settings(tmp_path, environ={}, image_quality=101)
    assert load_settings(tmp_path, environ={"MEDIATABLE_IMAGE_FORMAT": "JPG"}).image_format == "jpeg"


def test_global_setting_and_per_column_choice(clean_env: Path, tmp_path: Path) -> None:
    source = mediagen.make_photo_jpeg(tmp_path / "src.jpg")
    mt.init(home=clean_env, quiet=True, image_format="png")
    t = mt.create_table("pics", {"image": mt.Image})
    t.insert([{"image": str(source)}], quiet=True)
    t.add_computed_column(small=t.image.resize((64, 48)), quiet=True)
    t.add_computed_column(web=t.image.resize((64, 48)), image_format="webp", image_quality=40, quiet=True)
    t.add_computed_column(jpg=t.image.resize((64, 48)), image_format="jpeg", quiet=True)
    with pytest.raises(mt.InvalidArgument, match="Image columns"):
        t.add_computed_column(w=t.image.width, image_format="webp")
    with pytest.raises(mt.InvalidArgument, match="quality"):
        t.add_computed_column(bad=t.image.resize((8, 8)), image_quality=0)
    assert t.columns == ["image", "small", "web", "jpg"]

    def formats() -> list[tuple[str | None, ...]]:
        rows = t.select(a=t.small.localpath, b=t.web.localpath, c=t.jpg.localpath).collect()
        return [tuple(image_format(row[k]) for k in "abc") for row in rows]

    assert formats() == [("PNG", "WEBP", "JPEG")]
    # the column's choice is stored with it: a new session (other default) and new rows keep it
    mt.init(home=clean_env, quiet=True)
    t = mt.get_table("pics")
    t.insert([{"image": str(source)}], quiet=True)
    assert formats() == [("PNG", "WEBP", "JPEG"), ("JPEG", "WEBP", "JPEG")]
