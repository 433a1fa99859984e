"""Text embeddings (`mt.functions.embed_text`, all-MiniLM-L6-v2 from its wheel) through a table, offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import mediatable as mt
from mediatable.functions.ai import text_embedding


def test_embed_text_column_gives_unit_384d_vectors_ranked_by_meaning(clean_env: Path) -> None:
    mt.init(home=clean_env, quiet=True)
    t = mt.create_table("captions", {"caption": mt.String})
    captions = ["a red sports car on the road", "a bowl of hot tomato soup", "a kitten sleeping on a sofa", None]
    t.insert([{"caption": c} for c in captions], quiet=True)

    status = t.add_computed_column(vec=mt.functions.embed_text(t.caption), quiet=True)

    assert status.num_excs == 0
    vectors = t.select(t.caption, t.vec).collect()
    by_caption = dict(zip(vectors["caption"], vectors["vec"], strict=True))
    assert by_caption[None] is None
    stored = [by_caption[c] for c in captions[:3]]
    assert all(v.shape == (384,) and np.isclose(np.linalg.norm(v), 1.0, atol=1e-5) for v in stored)
    query = mt.functions.embed_text("an automobile")
    assert int(np.argmax([query @ v for v in stored])) == 0
    assert np.allclose(query, mt.functions.embed_text("an automobile"))  # deterministic
    assert os.environ["HF_HUB_OFFLINE"] == "1" and text_embedding.MODEL.loads == 1
