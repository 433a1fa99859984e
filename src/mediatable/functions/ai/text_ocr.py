"""OCR with RapidOCR (PP-OCRv6 detection and recognition, ONNX models shipped inside the `rapidocr` wheel).

`ocr(t.image)` gives JSON: the text in reading order and, per detected line, its text, confidence
and box (four corner points, pixels of the upright image). The model loads on first use, once per
process, and runs under a lock: ONNX Runtime already spreads one image over every core.

Examples:
    >>> import PIL.Image, PIL.ImageDraw, PIL.ImageFont
    >>> img = PIL.Image.new("RGB", (480, 120), "white")
    >>> PIL.ImageDraw.Draw(img).text((20, 20), "HELLO 42", fill="black", font=PIL.ImageFont.load_default(size=64))
    >>> ocr(img)["text"]
    'HELLO 42'
"""

from __future__ import annotations

from typing import Any

from mediatable import types as ts
from mediatable.functions.ai._models import LazyModel, model_udf, per_cell, require
from mediatable.functions.ai._pixels import ImageArg, upright_rgb

PACKAGES = {"rapidocr": "rapidocr", "onnxruntime": "onnxruntime", "cv2": "opencv-python-headless"}


def _load() -> Any:
    rapidocr = require("rapidocr", "rapidocr", "mt.functions.ocr")
    require("onnxruntime", "onnxruntime", "mt.functions.ocr")
    # its models ship in the wheel (it verifies them and would only download missing files)
    return rapidocr.RapidOCR(params={"Global.log_level": "error"})


MODEL: LazyModel[Any] = LazyModel("rapidocr PP-OCRv6", _load)


def read_text(image: ImageArg) -> dict[str, Any]:
    """OCR of one image (see :func:`ocr`)."""
    upright = upright_rgb(image)
    with MODEL.use() as engine:
        result = engine(upright)
    boxes = result.boxes if result.boxes is not None else ()
    lines = []
    for text, score, box in zip(result.txts or (), result.scores or (), boxes, strict=True):
        corners = [[round(float(x)), round(float(y))] for x, y in box]
        lines.append({"text": str(text), "score": round(float(score), 4), "box": corners})
    return {"text": "\n".join(line["text"] for line in lines), "lines": lines}


@model_udf(packages=PACKAGES, batch_size=8, returns=ts.Json)
def ocr(image: list[ts.Image]) -> list[dict[str, Any]]:
    """Read the text in images.

    Args:
        image: an Image column (in a table) or, called directly, PIL images or local paths.

    Returns:
        Per image `{"text": "line 1\\nline 2", "lines": [{"text", "score", "box"}, ...]}` where
        `box` lists the four corners `[[x, y], ...]` of the line in the upright image; `text` is
        `""` when nothing was found. A picture that cannot be decoded is an error in its cell.

    Examples:
        >>> # t.add_computed_column(ocr=mt.functions.ocr(t.image))
        >>> # t.select(t.ocr['text']).collect()
    """
    return per_cell(read_text, image)
