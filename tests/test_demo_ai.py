"""`mediatable demo --ai` ("Analyze images in batch") end to end, offline: OCR, near-duplicates, search."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediatable.demo import ai_recipe


def test_the_ai_recipe_reads_the_signs_groups_the_copies_and_answers_questions(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ai_recipe.main(clean_env, http_port=0)
    out = capsys.readouterr().out
    assert "Inserted 8 rows with 0 errors." in out and "Indexed 8 values of 'text' with 0 errors." in out
    for text, _ in ai_recipe.SIGNS.values():
        assert f"  {text}" in out or f" {text}\n" in out  # every sign read exactly
    assert "look alike: cafe, cafe_small" in out and "look alike: exit, exit_copy" in out
    for question, answer in zip(ai_recipe.QUESTIONS, ["cafe", "bus", "hotel"], strict=True):
        assert f"{question!r}: {answer} (" in out
