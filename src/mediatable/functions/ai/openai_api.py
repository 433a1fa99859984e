"""`mt.functions.openai`: chat, vision and embeddings through the OpenAI API or any server speaking it.

The provider is `openai` by default (key from env `OPENAI_API_KEY` or `[openai] api_key` in
`<home>/config.toml`, URL from `OPENAI_BASE_URL` or `base_url`); `provider='name'` picks another
`[name]` section, e.g. a local vLLM or Ollama server. Building a column checks that the provider
has a key, so a missing key is one error when the column is added. Requests run at most
`max_concurrency` at once per provider, with retries (see :mod:`~mediatable.functions.ai.providers`);
each cell gets its answer or its own error.

Images go to `vision` as base64 JPEG (`image=t.image`: works whatever the provider can reach), or
as a URL the provider fetches itself (`image_url=`, e.g. a presigned URL of a bucket it can reach).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import PIL.Image

from mediatable import types as ts
from mediatable.errors import ExprError, ProviderError
from mediatable.exprs import CellError, Expr, Literal
from mediatable.functions.ai._models import column, model_udf, per_cell
from mediatable.functions.ai._pixels import upright_rgb
from mediatable.functions.ai.providers import current

PACKAGES = {"openai": "openai"}


def _check_provider(kwargs: dict[str, Any]) -> None:
    """When a column is built: the provider must be a constant and have an API key."""
    name = kwargs.get("provider", "openai")
    if isinstance(name, Expr):
        if not isinstance(name, Literal):
            raise ExprError("provider= must be a constant provider name, e.g. provider='openai'")
        name = name.value
    if "model" not in kwargs:
        raise ExprError("pass model=, e.g. model='gpt-4o-mini'")
    current().check(str(name))


def _options(n: int, **options: Any) -> list[dict[str, Any]]:
    """Per-row request options from batched keyword arguments, leaving out the unset ones."""
    columns = {k: column(v, n) for k, v in options.items()}
    return [{k: values[i] for k, values in columns.items() if values[i] is not None} for i in range(n)]


def _reply_text(response: Any, what: str, provider: str) -> str:
    choice = response.choices[0]
    if choice.message.content is None:
        reason = f"the reply has no text (finish_reason={choice.finish_reason!r})"
        raise ProviderError(f"{provider} {what}: {reason}", provider=provider)
    return str(choice.message.content)


def _messages(prompt: Any, system: str | None) -> list[dict[str, Any]]:
    messages = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    return [{"role": "system", "content": system}, *messages] if system else messages


@model_udf(packages=PACKAGES, batch_size=16, returns=ts.String, check=_check_provider)
def chat(
    prompt: list[Any],
    *,
    model: list[str] | str,
    system: list[str] | str | None = None,
    temperature: list[float] | float | None = None,
    max_tokens: list[int] | int | None = None,
    provider: list[str] | str = "openai",
) -> list[Any]:
    """Ask a chat model; the reply's text per row.

    Args:
        prompt: the user's message (String), or a whole conversation (Json list of `{"role", "content"}`).
        model: the model's name at the provider, e.g. `'gpt-4o-mini'`.
        system: a system message put first.
        temperature: sampling temperature.
        max_tokens: the most tokens the reply may have.
        provider: which provider section to use (default `'openai'`).

    Examples:
        >>> # t.add_computed_column(answer=mt.functions.openai.chat(t.question, model='gpt-4o-mini'))
    """
    n = len(prompt)
    name = column(provider, n)[0]
    options = _options(n, model=model, temperature=temperature, max_tokens=max_tokens)
    requests = [(_messages(p, s), o) for p, s, o in zip(prompt, column(system, n), options, strict=True)]

    def send(client: Any, request: tuple[list[dict[str, Any]], dict[str, Any]]) -> str:
        messages, opts = request
        return _reply_text(client.chat.completions.create(messages=messages, **opts), "chat", name)

    return current().get(name).map(send, requests, f"chat ({options[0]['model']})")


def image_data_url(image: PIL.Image.Image | str, max_side: int = 2048) -> str:
    """An image as a `data:image/jpeg;base64,...` URL: upright, RGB, at most `max_side` pixels a side.

    Examples:
        >>> image_data_url(PIL.Image.new("RGB", (8, 8), "red"))[:30]
        'data:image/jpeg;base64,/9j/4AA'
    """
    upright = upright_rgb(image)
    if max(upright.size) > max_side:
        upright.thumbnail((max_side, max_side), PIL.Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    upright.save(buffer, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@model_udf(packages=PACKAGES, batch_size=16, returns=ts.String, check=_check_provider)
def vision(
    prompt: list[str],
    image: list[ts.Image] | None = None,
    *,
    model: list[str] | str,
    image_url: list[str] | str | None = None,
    detail: list[str] | str | None = None,
    max_tokens: list[int] | int | None = None,
    max_side: list[int] | int = 2048,
    provider: list[str] | str = "openai",
) -> list[Any]:
    """Ask a vision model about an image; the reply's text per row.

    Args:
        prompt: the question about the image.
        image: an Image column: its pixels are sent as base64 JPEG (works whatever the provider can reach).
        model: the model's name at the provider, e.g. `'gpt-4o-mini'`.
        image_url: instead of `image`, a URL the provider fetches itself, e.g.
            `mt.functions.presigned_url(t.image, 3600)` for a bucket the provider can reach.
        detail: `'low'`, `'high'` or `'auto'` (OpenAI's image detail).
        max_tokens: the most tokens the reply may have.
        max_side: base64 images are scaled down to at most this many pixels a side first.
        provider: which provider section to use (default `'openai'`).

    Examples:
        >>> # t.add_computed_column(caption=mt.functions.openai.vision('Describe it.', t.image, model='gpt-4o-mini'))
    """
    n = len(prompt)
    name = column(provider, n)[0]
    images, urls, details, sides = column(image, n), column(image_url, n), column(detail, n), column(max_side, n)
    options = _options(n, model=model, max_tokens=max_tokens)

    def request(i: int) -> dict[str, Any]:
        if (images[i] is None) == (urls[i] is None):
            raise ExprError(f"vision() takes image= or image_url=, not {'both' if urls[i] else 'neither'}")
        url = urls[i] if urls[i] is not None else image_data_url(images[i], sides[i])
        picture = {"url": url, **({"detail": details[i]} if details[i] else {})}
        content = [{"type": "text", "text": str(prompt[i])}, {"type": "image_url", "image_url": picture}]
        return {"messages": [{"role": "user", "content": content}], **options[i]}

    def send(client: Any, body: dict[str, Any]) -> str:
        return _reply_text(client.chat.completions.create(**body), "vision", name)

    out = per_cell(request, range(n))  # an image that cannot be decoded fails its own cell, before any request
    ready = [i for i, body in enumerate(out) if not isinstance(body, CellError)]
    answers = current().get(name).map(send, [out[i] for i in ready], f"vision ({options[0]['model']})")
    for i, answer in zip(ready, answers, strict=True):
        out[i] = answer
    return out


@model_udf(packages=PACKAGES, batch_size=64, returns=ts.Array(ts.Float, (None,)), check=_check_provider)
def embeddings(
    text: list[str],
    *,
    model: list[str] | str,
    dimensions: list[int] | int | None = None,
    provider: list[str] | str = "openai",
) -> list[Any]:
    """Embed texts with the provider's embedding model: one request per batch of up to 64 texts.

    Args:
        text: the texts.
        model: the embedding model, e.g. `'text-embedding-3-small'`.
        dimensions: ask for shorter vectors (models that support it).
        provider: which provider section to use (default `'openai'`).

    Examples:
        >>> # t.add_computed_column(vec=mt.functions.openai.embeddings(t.text, model='text-embedding-3-small'))
    """
    n = len(text)
    name = column(provider, n)[0]
    options = _options(n, model=model, dimensions=dimensions)[0]

    def send(client: Any, texts: list[str]) -> list[np.ndarray]:
        response = client.embeddings.create(input=texts, **options)
        vectors = sorted(response.data, key=lambda d: d.index)
        if len(vectors) != len(texts):
            raise ProviderError(f"{name} embeddings: {len(vectors)} vectors for {len(texts)} texts", provider=name)
        return [np.asarray(v.embedding, dtype=np.float64) for v in vectors]

    (result,) = current().get(name).map(send, [[str(t) for t in text]], f"embeddings ({options['model']})")
    return result if isinstance(result, list) else [result] * n
