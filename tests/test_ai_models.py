"""The machinery shared by model functions: lazy loading once per process, missing extras, no import-time load."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mediatable.functions.ai._models import LazyModel


def test_lazy_model_loads_once_when_many_threads_ask_at_once() -> None:
    started = threading.Barrier(8)

    def slow_loader() -> object:
        time.sleep(0.05)
        return object()

    model = LazyModel("slow", slow_loader)
    seen: list[object] = []
    assert model.loads == 0

    def worker() -> None:
        started.wait()
        seen.append(model.get())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert model.loads == 1 and len({id(s) for s in seen}) == 1


def test_a_failed_load_raises_and_is_retried() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("weights unreadable")
        return "model"

    model = LazyModel("flaky", flaky)
    with pytest.raises(OSError, match="weights unreadable"):
        model.get()
    assert model.get() == "model" and model.loads == 1


SCRIPT = """
import importlib.abc, sys
BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None

sys.meta_path.insert(0, Block())
import mediatable as mt
mt.init(home={home!r}, quiet=True)
t = mt.create_table("t", {{"image": mt.Image, "text": mt.String}})
heavy = ("rapidocr", "torch", "sentence_transformers", "cv2", "imagehash", "openai")
loaded = sorted(m for m in heavy if m in sys.modules)
print("LOADED", loaded)
for build in (lambda: mt.functions.ocr(t.image), lambda: mt.functions.embed_text(t.text)):
    try:
        t.add_computed_column(out=build())
    except mt.MissingDependency as exc:
        assert isinstance(exc, ImportError)
        print("ERROR", exc)
print("COLUMNS", t.columns)
"""


def test_nothing_loads_at_import_and_a_missing_extra_names_the_pip_command(tmp_path: Path) -> None:
    script = SCRIPT.format(blocked=["rapidocr", "torch"], home=str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120, check=True
    )
    lines = result.stdout.splitlines()
    assert "LOADED []" in lines
    assert "ERROR mt.functions.ocr needs rapidocr, which is not installed: pip install 'mediatable[ai]'" in lines
    assert "ERROR mt.functions.embed_text needs torch, which is not installed: pip install 'mediatable[ai]'" in lines
    assert "COLUMNS ['image', 'text']" in lines  # the check ran before any column was added
