"""Provider lookup (`functions/ai/providers.py`): which settings a provider needs, Retry-After parsing."""

from __future__ import annotations

import email.utils
import socket
import time
from pathlib import Path

import pytest

import mediatable as mt
from mediatable.config import load_settings
from mediatable.functions.ai.providers import Providers, _retry_after


def test_a_provider_needs_a_key_and_non_openai_ones_a_base_url(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[vllm]\napi_key = "x"\n[ollama]\nbase_url = "http://127.0.0.1:1/v1"\n')
    providers = Providers(load_settings(tmp_path, environ={}))
    with pytest.raises(mt.ConfigError, match="provider 'vllm' needs a base_url under \\[vllm\\]"):
        providers.get("vllm")
    with pytest.raises(mt.ConfigError, match="no API key for provider 'ollama': set OLLAMA_API_KEY"):
        providers.get("ollama")
    with pytest.raises(mt.ConfigError, match="unknown AI provider 'other'"):
        providers.get("other")
    ok = Providers(load_settings(tmp_path, environ={"OLLAMA_API_KEY": "anything"}))
    assert repr(ok.get("ollama")) == "<Provider ollama at http://127.0.0.1:1/v1>"
    ok.close()


def test_retry_after_in_seconds_milliseconds_or_a_date() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (_retry_after({"Retry-After": later}) or 0) <= 31
    assert _retry_after({"Retry-After": "soon"}) is None
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25


def test_an_unreachable_server_is_retried_then_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "config.toml").write_text(
        f'[openai]\napi_key = "sk-unused-key"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
        'max_retries = 1\nretry_backoff = "10ms"\ntimeout = "2s"\n'
    )
    providers = Providers(load_settings(tmp_path, environ={}))
    provider = providers.get("openai")

    def send(client: object, prompt: str) -> str:
        return str(client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}]))  # type: ignore[attr-defined]

    (result,) = provider.map(send, ["hi"], "chat (m)")
    providers.close()
    assert result.errortype == "ProviderError"
    assert result.errormsg == "openai chat (m) failed: APIConnectionError: Connection error. (after 2 attempts)"
    assert result.exc.is_retryable and result.exc.status is None
