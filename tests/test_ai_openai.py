"""`mt.functions.openai` (chat, vision, embeddings) against a real loopback server speaking the OpenAI API.

The server (tests/servers/openai_api.py) checks the key, decodes image payloads, injects 429s and
500s, counts calls and the peak of concurrent requests. Nothing is monkeypatched: the requests go
through the real `openai` client over HTTP to 127.0.0.1.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import sqlalchemy as sa

import mediatable as mt
from servers.http import FaultServer
from servers.openai_api import OpenAIServer, fake_embedding


def configure(home: Path, server: OpenAIServer, key: str | None = None, **options: object) -> None:
    """Write `[openai]` into `<home>/config.toml` (private, as a file holding a key should be)."""
    lines = ["[openai]", f'api_key = "{key or server.api_key}"', f'base_url = "{server.base_url}"']
    lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in options.items()]
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)


def prompts_table(prompts: list[str | None]) -> mt.Table:
    t = mt.create_table("questions", {"q": mt.String, "n": mt.Int})
    t.insert([{"q": p, "n": i} for i, p in enumerate(prompts)], quiet=True)
    return t


def test_chat_per_cell_answers_with_key_and_url_from_config(clean_env: Path, openai_server: OpenAIServer) -> None:
    configure(clean_env, openai_server)
    mt.init(home=clean_env, quiet=True)  # an [openai] section used to fail here: "unknown setting 'openai'"
    t = prompts_table(["What is 2+2?", None, "Name a colour."])

    status = t.add_computed_column(
        answer=mt.functions.openai.chat(t.q, model="gpt-test", system="Be brief."), quiet=True
    )

    assert (status.num_computed_values, status.num_excs) == (3, 0)
    answers = t.order_by(t.n).select(t.answer).collect()["answer"]
    assert answers == [
        "gpt-test: What is 2+2? | system: Be brief.",
        None,
        "gpt-test: Name a colour. | system: Be brief.",
    ]
    assert openai_server.calls("chat/completions") == 2 and all(r.auth_ok for r in openai_server.records)
    t.insert([{"q": "later", "n": 9}], quiet=True)  # new rows are answered too
    assert t.where(t.n == 9).select(t.answer).collect()["answer"] == ["gpt-test: later | system: Be brief."]


def test_key_and_url_from_env_vars(
    clean_env: Path, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    mt.init(home=clean_env, quiet=True)
    t = prompts_table(["hi"])
    t.add_computed_column(answer=mt.functions.openai.chat(t.q, model="m"), quiet=True)
    assert t.select(t.answer).collect()["answer"] == ["m: hi"]


def test_a_missing_key_fails_when_the_column_is_added_before_any_request(
    clean_env: Path, openai_server: OpenAIServer
) -> None:
    mt.init(home=clean_env, quiet=True)
    t = prompts_table(["a", "b"])
    with pytest.raises(mt.ConfigError, match="no API key for provider 'openai': set OPENAI_API_KEY or api_key") as err:
        t.add_computed_column(answer=mt.functions.openai.chat(t.q, model="m"))
    assert str(clean_env / "config.toml") in str(err.value)
    with pytest.raises(mt.ConfigError, match="unknown AI provider 'local'"):
        mt.functions.openai.chat(t.q, model="m", provider="local")
    assert t.columns == ["q", "n"] and openai_server.calls() == 0


def test_a_429_pauses_every_request_to_the_provider_for_its_retry_after(
    clean_env: Path, openai_server: OpenAIServer
) -> None:
    configure(clean_env, openai_server, max_concurrency=2)
    mt.init(home=clean_env, quiet=True)
    t = prompts_table([f"q{i}" for i in range(6)])
    openai_server.latency = 0.2
    openai_server.fail(status=429, times=1, retry_after=1)

    status = t.add_computed_column(answer=mt.functions.openai.chat(t.q, model="m"), quiet=True)

    assert status.num_excs == 0
    assert t.order_by(t.n).select(t.answer).collect()["answer"] == [f"m: q{i}" for i in range(6)]
    records = openai_server.records
    throttled = next(r for r in records if r.status == 429)
    gaps = [r.at - throttled.at for r in records if r.at > throttled.at + 0.1]  # sent after the 429 came back
    assert gaps and min(gaps) >= 0.95  # the other thread waited too, not only the throttled request
    assert openai_server.calls() == 7


def test_5xx_are_retried_with_backoff_then_reported_in_their_own_cell(
    clean_env: Path, openai_server: OpenAIServer
) -> None:
    configure(clean_env, openai_server, max_retries=2, retry_backoff="10ms")
    mt.init(home=clean_env, quiet=True)
    t = prompts_table(["one", "flaky", "poison", "four"])
    openai_server.fail(status=500, match="poison", times=None)
    openai_server.fail(status=503, match="flaky", times=2)

    status = t.add_computed_column(answer=mt.functions.openai.chat(t.q, model="m"), quiet=True)

    assert (status.num_computed_values, status.num_excs) == (4, 1)
    rows = t.order_by(t.n).select(t.answer, t.answer.errortype, t.answer.errormsg).collect()
    assert rows["answer"] == ["m: one", "m: flaky", None, "m: four"]
    assert rows["answer_errortype"][2] == "ProviderError"
    assert rows["answer_errormsg"][2] == "openai chat (m) failed: HTTP 500: injected 500 (after 3 attempts)"
    assert [sum(1 for r in openai_server.records if word in str(r.body)) for word in ("flaky", "poison")] == [3, 3]
    assert openai_server.calls() == 1 + 3 + 3 + 1


def test_requests_in_flight_never_exceed_max_concurrency(clean_env: Path, openai_server: OpenAIServer) -> None:
    configure(clean_env, openai_server, max_concurrency=3)
    mt.init(home=clean_env, quiet=True, compute_workers=2)
    t = prompts_table([f"q{i}" for i in range(40)])  # 3 batches of up to 16, computed by 2 workers at once
    openai_server.latency = 0.05
    t.add_computed_column(answer=mt.functions.openai.chat(t.q, model="m"), quiet=True)
    assert openai_server.calls() == 40 and openai_server.peak == 3


def exif_rotated_jpeg(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    """A picture stored sideways (height x width) with the EXIF tag that turns it back to `size`."""
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (size[1], size[0]), colour).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_vision_sends_upright_base64_pixels_or_a_url(
    clean_env: Path, openai_server: OpenAIServer, http_server: FaultServer, tmp_path: Path
) -> None:
    configure(clean_env, openai_server)
    mt.init(home=clean_env, quiet=True)
    big = PIL.Image.new("RGB", (3000, 1000), (0, 0, 255))
    big_bytes = io.BytesIO()
    big.save(big_bytes, "PNG")
    urls = [
        http_server.put("vision/red.jpg", exif_rotated_jpeg((80, 40), (255, 0, 0))),
        http_server.put("vision/big.png", big_bytes.getvalue()),
        http_server.put("vision/broken.jpg", b"not an image"),
    ]
    t = mt.create_table("pics", {"image": mt.Image, "n": mt.Int, "link": mt.String})
    t.insert([{"image": u, "n": i, "link": f"https://example.invalid/{i}.jpg"} for i, u in enumerate(urls)], quiet=True)

    t.add_computed_column(pixels=mt.functions.openai.vision("What is it?", t.image, model="v"), quiet=True)
    t.add_computed_column(link_answer=mt.functions.openai.vision("And this?", image_url=t.link, model="v"), quiet=True)

    rows = t.order_by(t.n).select(t.pixels, t.pixels.errortype, t.link_answer).collect()
    assert rows["pixels"][0] == "v: What is it? | image 80x40 mean 254,0,0"  # upright: EXIF applied before sending
    assert rows["pixels"][1].startswith("v: What is it? | image 2048x683 mean 0,0,25")  # scaled to max_side
    assert rows["pixels"][2] is None and rows["pixels_errortype"][2] == "MediaDecodeError"
    assert rows["link_answer"] == [f"v: And this? | url https://example.invalid/{i}.jpg" for i in range(3)]
    assert openai_server.calls("chat/completions") == 2 + 3  # the undecodable image was never sent


def test_embeddings_one_request_per_batch(clean_env: Path, openai_server: OpenAIServer) -> None:
    configure(clean_env, openai_server)
    mt.init(home=clean_env, quiet=True)
    texts = [f"text number {i}" for i in range(70)]
    t = mt.create_table("docs", {"text": mt.String})
    t.insert([{"text": s} for s in texts], quiet=True)

    t.add_computed_column(vec=mt.functions.openai.embeddings(t.text, model="e", dimensions=12), quiet=True)

    rows = t.select(t.text, t.vec).collect()
    for text, vector in zip(rows["text"], rows["vec"], strict=True):
        assert np.allclose(vector, fake_embedding(text, 12))
    assert openai_server.calls("embeddings") == 2  # 64 + 6 texts


def test_keys_never_appear_in_errors_logs_reprs_or_the_catalog(
    clean_env: Path, openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-" + "7" * 24
    configure(clean_env, openai_server, key=wrong)
    caplog.set_level(logging.DEBUG)
    session = mt.init(home=clean_env, quiet=True)
    t = prompts_table(["hello"])

    t.add_computed_column(answer=mt.functions.openai.chat(t.q, model="m"), quiet=True)

    (message,) = t.select(t.answer.errormsg).collect()["answer_errormsg"]
    assert message == "openai chat (m) failed: HTTP 401: Incorrect API key provided: ***."  # the server echoed it
    assert openai_server.calls() == 1  # 401 is not retried
    with session.engine.connect() as conn:
        catalog = " ".join(str(row) for row in conn.execute(sa.text("SELECT * FROM mt_columns")))
    seen = [caplog.text, repr(session), repr(session.settings), repr(session.providers.get("openai")), repr(t)]
    seen += [repr(session.settings.providers), catalog, message]
    assert all(wrong not in text for text in seen)
    assert "answer" in catalog and os.stat(clean_env / "config.toml").st_mode & 0o077 == 0
