"""The model client: one place that calls the Messages API, maps its failures to
`ModelUnavailable`, bounds concurrency and writes the usage ledger."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import anthropic

from bot.errors import ModelUnavailable
from bot.events import TextSink
from bot.metrics import MODEL_TOKENS
from bot.pricing import estimate_cost
from bot.settings import LLMSettings, Secrets
from bot.store import Store, UsageRecord

log = logging.getLogger(__name__)

CACHE = {"type": "ephemeral"}
# The SDK refuses non-streaming calls that could outlive 10 minutes (about
# 21k output tokens); below that a plain request is cheaper to parse than SSE.
NON_STREAMING_MAX_TOKENS = 16_000


@dataclass(frozen=True, slots=True)
class ModelResult:
    """One model response, reduced to what archbot stores and uses."""

    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: UsageRecord

    @property
    def text(self) -> str:
        """All text blocks joined."""
        return "\n\n".join(
            b["text"] for b in self.content if b.get("type") == "text" and b.get("text")
        ).strip()

    @property
    def raw_text(self) -> str:
        """The text blocks exactly as streamed (no separators, nothing stripped)."""
        return "".join(b["text"] for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        """The tool_use blocks, in order."""
        return [b for b in self.content if b.get("type") == "tool_use"]


def block_to_param(block: Any) -> dict[str, Any] | None:
    """Turn an SDK content block into the plain dict we store and send back."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return None  # thinking, server tools and future types are not replayed


def describe_api_error(exc: Exception) -> ModelUnavailable:
    """Map an SDK exception to a cause and a short message that names it (no secrets)."""
    if isinstance(exc, anthropic.AuthenticationError):
        return ModelUnavailable(
            "auth",
            "the model service rejected the credentials (401 Unauthorized): check ANTHROPIC_API_KEY",
        )
    if isinstance(exc, anthropic.PermissionDeniedError):
        return ModelUnavailable(
            "auth", "the model service refused access (403): check ANTHROPIC_API_KEY's permissions"
        )
    if isinstance(exc, anthropic.RateLimitError):
        return ModelUnavailable(
            "rate_limit", "the model service is rate-limiting us (429) even after retries"
        )
    if isinstance(exc, anthropic.OverloadedError):
        return ModelUnavailable(
            "overloaded", "the model service is overloaded (529) even after retries"
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return ModelUnavailable("timeout", "the model did not answer in time (timeout)")
    if isinstance(exc, anthropic.APIConnectionError):
        return ModelUnavailable(
            "connection", "the model service cannot be reached (connection error)"
        )
    if isinstance(exc, anthropic.NotFoundError):
        return ModelUnavailable(
            "error", "the model service does not know the configured model (404)"
        )
    if isinstance(exc, anthropic.APIStatusError):
        return ModelUnavailable(
            "overloaded" if exc.status_code >= 500 else "error",
            f"the model service answered with an error ({exc.status_code})",
        )
    return ModelUnavailable("error", f"the model call failed ({type(exc).__name__})")


# Modules the SDK imports on its first request. One of them scans package
# metadata for entry points (~100 ms), which would stall the event loop (and
# every Slack acknowledgement) in the middle of the first busy minute.
_FIRST_REQUEST_IMPORTS = ("anyio._backends._asyncio", "opentelemetry.propagate")


def warm_up_sdk() -> None:
    """Import what the SDK would otherwise import lazily during the first request."""
    for name in _FIRST_REQUEST_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def make_anthropic_client(
    secrets: Secrets, *, max_retries: int, timeout: float
) -> anthropic.AsyncAnthropic:
    """The SDK client for the configured key and base URL (either may be absent)."""
    key = secrets.anthropic_api_key.get_secret_value() if secrets.anthropic_api_key else None
    return anthropic.AsyncAnthropic(
        api_key=key or None,
        base_url=secrets.anthropic_base_url or None,
        max_retries=max_retries,
        timeout=timeout,
    )


class ModelClient:
    """Calls the Messages API with bounded concurrency and records every call's usage."""

    def __init__(
        self,
        llm: LLMSettings,
        secrets: Secrets,
        store: Store,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        self.settings = llm
        self.store = store
        self.offline = client is None and not secrets.model_configured
        self._semaphore = asyncio.Semaphore(llm.max_concurrency)
        if client is None and not self.offline:
            client = make_anthropic_client(
                secrets, max_retries=llm.max_retries, timeout=llm.timeout_seconds
            )
        if client is not None:
            warm_up_sdk()
        self.client = client

    async def complete(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        purpose: str = "chat",
        thread_id: int | None = None,
        channel_key: str = "",
        user: str = "",
        max_tokens: int | None = None,
        model: str | None = None,
        tool_choice: dict[str, Any] | None = None,
        on_text: TextSink | None = None,
    ) -> ModelResult:
        """One Messages API call; raises ModelUnavailable on any failure.

        It is streamed when `on_text` wants the text as it is written (or when
        max_tokens is too large for a plain request).
        """
        if self.client is None:
            raise ModelUnavailable(
                "no_key",
                "no model is configured: ANTHROPIC_API_KEY is not set (nor ANTHROPIC_BASE_URL)",
            )
        model_name = model or self.settings.model
        params: dict[str, Any] = {
            "model": model_name,
            "max_tokens": max_tokens or self.settings.max_tokens,
            # The system prompt and tools never change, so they form a cached
            # prefix; the top-level marker caches the conversation so far
            # without rewriting earlier blocks (each request stays a byte-wise
            # extension of the previous one).
            "system": [{"type": "text", "text": system, "cache_control": CACHE}],
            "messages": messages,
            "cache_control": CACHE,
        }
        if tools:
            params["tools"] = tools
        if tool_choice:
            params["tool_choice"] = tool_choice
        started = time.perf_counter()
        async with self._semaphore:
            try:
                if on_text is not None or params["max_tokens"] > NON_STREAMING_MAX_TOKENS:
                    async with self.client.messages.stream(**params) as stream:
                        if on_text is not None:
                            async for text in stream.text_stream:
                                await on_text(text)
                        message = await stream.get_final_message()
                else:
                    message = await self.client.messages.create(**params)
            except anthropic.APIError as exc:
                log.warning("model call failed: %s", type(exc).__name__)
                raise describe_api_error(exc) from None
            except TimeoutError:
                raise ModelUnavailable(
                    "timeout", "the model did not answer in time (timeout)"
                ) from None
        latency_ms = int((time.perf_counter() - started) * 1000)
        usage = message.usage
        cache_read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
        cache_write = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
        record = UsageRecord(
            model=model_name,
            purpose=purpose,
            input_tokens=int(usage.input_tokens or 0),
            output_tokens=int(usage.output_tokens or 0),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            latency_ms=latency_ms,
            cost_usd=estimate_cost(
                model_name,
                input_tokens=int(usage.input_tokens or 0),
                output_tokens=int(usage.output_tokens or 0),
                cache_read=cache_read,
                cache_write=cache_write,
            ),
        )
        self.store.record_usage(record, thread_id=thread_id, channel_key=channel_key, user=user)
        for kind, count in (
            ("input", record.input_tokens),
            ("output", record.output_tokens),
            ("cache_read", record.cache_read_tokens),
            ("cache_write", record.cache_write_tokens),
        ):
            MODEL_TOKENS.labels(kind=kind).inc(count)
        content = [p for p in (block_to_param(b) for b in message.content) if p is not None]
        return ModelResult(content=content, stop_reason=message.stop_reason, usage=record)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self.client is not None:
            await self.client.close()
