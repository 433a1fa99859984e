"""Analyze images in batch: remote images -> OCR column -> text embedding index -> similarity search,
plus a near-duplicate report. Runs offline (the models ship inside PyPI wheels):

    python examples/analyze_images.py          # the same as `mediatable demo --ai`

The recipe's code is :func:`mediatable.demo.ai_recipe.run`; in short::

    t = mt.create_table('ai_demo.images', {'image': mt.Image, 'name': mt.String})
    t.insert([{'image': url, 'name': name} for name, url in images])      # references only
    t.add_computed_column(ocr=mt.functions.ocr(t.image))                  # fetched once, through the cache
    t.add_computed_column(text=t.ocr['text'])
    t.add_computed_column(phash=mt.functions.phash(t.image))
    rows = t.select(t.name, t.phash).collect()
    mt.functions.near_duplicates(rows['phash'], max_distance=6)            # [[0, 6], [2, 7]]
    t.add_embedding_index('text', embedding=mt.functions.embed_text)
    t.order_by(t.text.similarity('a place to drink coffee'), asc=False).limit(1).collect()
"""

from __future__ import annotations

import sys

from mediatable.demo import ai_recipe

if __name__ == "__main__":
    ai_recipe.main(sys.argv[1] if len(sys.argv) > 1 else None)
