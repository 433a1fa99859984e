"""OCR (`mt.functions.ocr`, RapidOCR PP-OCRv6) over remote images, end to end.

Images are rendered with Pillow's built-in font, so the expected text is known exactly. OCR costs
~0.6 s per image here: the tests use few, small images.
"""

from __future__ import annotations

import io
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import pytest

import mediagen
import mediatable as mt
from mediatable.functions.ai import text_ocr
from servers.http import FaultServer


def text_image(text: str, size: tuple[int, int] = (520, 120), orientation: int | None = None) -> bytes:
    """A JPEG of black text on white; with `orientation`, stored sideways plus that EXIF tag."""
    img = PIL.Image.new("RGB", size, "white")
    PIL.ImageDraw.Draw(img).text((16, 24), text, fill="black", font=PIL.ImageFont.load_default(size=64))
    buffer = io.BytesIO()
    if orientation == 6:  # tag 6: the viewer turns the stored pixels 90 degrees clockwise
        exif = PIL.Image.Exif()
        exif[0x0112] = 6
        img.transpose(PIL.Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    else:
        img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def home(clean_env: Path) -> Path:
    mt.init(home=clean_env, quiet=True)
    return clean_env


def test_ocr_reads_remote_images_exactly_with_boxes_scores_and_per_cell_errors(
    home: Path, http_server: FaultServer, tmp_path: Path
) -> None:
    urls = [
        http_server.put("ocr/hello.jpg", text_image("HELLO 42")),
        http_server.put("ocr/sideways.jpg", text_image("RED CAR", orientation=6)),
        http_server.put("ocr/broken.jpg", mediagen.make_corrupt_jpeg(tmp_path / "broken.jpg").read_bytes()),
        http_server.put(
            "ocr/blank.jpg", mediagen.make_jpeg(tmp_path / "blank.jpg", color=(255, 255, 255)).read_bytes()
        ),
    ]
    t = mt.create_table("scans", {"image": mt.Image, "n": mt.Int})
    t.insert([{"image": u, "n": i} for i, u in enumerate(urls)], quiet=True)

    status = t.add_computed_column(ocr=mt.functions.ocr(t.image), quiet=True)

    assert (status.num_computed_values, status.num_excs) == (4, 1)
    rows = t.order_by(t.n).select(t.ocr, text=t.ocr["text"], err=t.ocr.errormsg).collect()
    assert rows["text"] == ["HELLO 42", "RED CAR", None, ""]  # sideways: read after applying EXIF orientation
    hello = rows["ocr"][0]["lines"]
    assert [line["text"] for line in hello] == ["HELLO 42"]
    assert 0.8 < hello[0]["score"] <= 1.0
    xs, ys = zip(*hello[0]["box"], strict=True)
    assert 0 <= min(xs) < 40 and 250 < max(xs) <= 520 and min(ys) >= 0 and max(ys) <= 120  # upright frame
    sideways = rows["ocr"][1]["lines"][0]["box"]
    assert max(y for _, y in sideways) <= 120 and max(x for x, _ in sideways) > 200  # boxes of the upright picture
    assert rows["err"][2] is not None and "ocr/broken.jpg" in rows["err"][2] and "cannot decode" in rows["err"][2]
    assert rows["ocr"][3] == {"text": "", "lines": []}
    assert text_ocr.MODEL.loads == 1  # one load per process, whichever thread asked first

    t.insert([{"image": http_server.put("ocr/later.jpg", text_image("LATER")), "n": 9}], quiet=True)
    assert t.where(t.n == 9).select(text=t.ocr["text"]).collect()["text"] == ["LATER"]
    assert text_ocr.MODEL.loads == 1
