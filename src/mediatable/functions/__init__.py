"""Built-in functions, one module per kind of value, and the `@udf` decorator.

Importing this package registers every built-in as a method or property of expressions of its type
(`t.image.width`, `t.video.extract_frame(1.0)`, `t.label.upper()`); the modules can also be called
directly: `mt.functions.image.resize(t.image, (128, 128))`.

Examples:
    >>> from mediatable import functions
    >>> functions.image.width.return_type, functions.string.upper("a")
    (Int, 'A')
"""

from mediatable.functions import aggregates, ai, audio, document, image, json, math, net, string, video
from mediatable.functions.aggregates import count, max, mean, min, sum
from mediatable.functions.ai import (
    detect_faces,
    embed_image,
    embed_text,
    hamming_distance,
    near_duplicates,
    ocr,
    openai,
    phash,
)
from mediatable.functions.net import presigned_url
from mediatable.functions.udf import Function, udf

__all__ = [
    "Function",
    "aggregates",
    "ai",
    "audio",
    "count",
    "detect_faces",
    "document",
    "embed_image",
    "embed_text",
    "hamming_distance",
    "image",
    "json",
    "math",
    "max",
    "mean",
    "min",
    "near_duplicates",
    "net",
    "ocr",
    "openai",
    "phash",
    "presigned_url",
    "string",
    "sum",
    "udf",
    "video",
]
