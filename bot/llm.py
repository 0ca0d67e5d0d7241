"""The model client: one place that calls the Messages API, maps its failures to
`ModelUnavailable`, bounds concurrency and writes the usage ledger."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anthropic
from anthropic._base_client import get_platform
from anthropic.types import Message

from bot.errors import ModelUnavailable
from bot.events import TextSink
from bot.metrics import TOKENS_CACHE_READ, TOKENS_CACHE_WRITE, TOKENS_INPUT, TOKENS_OUTPUT
from bot.pricing import estimate_cost
from bot.settings import LLMSettings, Secrets
from bot.store import Store, UsageRecord

log = logging.getLogger(__name__)

CACHE = {"type": "ephemeral"}
# Sent as the key when only ANTHROPIC_BASE_URL is set (Ollama, vLLM, llama.cpp and
# gateways without auth ignore it; the SDK refuses to send a request with no
# credential at all). Plainly not a secret, so nobody redacts or rotates it.
PLACEHOLDER_API_KEY = "archbot-no-api-key"
# Block types that can carry a cache breakpoint; thinking blocks cannot.
_CACHEABLE_BLOCKS = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "search_result"}
)
REASON_LIMIT = 200  # characters of the service's own error message we show and log
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
        text = getattr(block, "text", None)
        # The API refuses empty or blank text blocks in a request, and some
        # gateways return one before a tool call; replaying it would break the thread.
        if not isinstance(text, str) or not text.strip():
            return None
        return {"type": "text", "text": text}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return None  # thinking, server tools and future types are not replayed


def with_cache_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with a cache breakpoint on the last block of the last message.

    A marker on a content block is what every Anthropic-compatible server
    understands (gateways strip it for backends without caching), unlike the
    top-level `cache_control` key, which they pass on to backends that refuse
    it. Only the copied last message changes: history objects are reused.
    """
    if not messages:
        return messages
    last = messages[-1]
    content = last.get("content")
    if isinstance(content, str):
        if not content:
            return messages
        blocks: list[Any] = [{"type": "text", "text": content}]
    elif isinstance(content, list):
        blocks = list(content)
    else:
        return messages
    for index in range(len(blocks) - 1, -1, -1):
        block = blocks[index]
        if isinstance(block, dict) and block.get("type") in _CACHEABLE_BLOCKS:
            blocks[index] = {**block, "cache_control": CACHE}
            return [*messages[:-1], {**last, "content": blocks}]
    return messages


_SECRET_LIKE = re.compile(r"\b(?:sk|xox[abposr]|xapp|ghp|gho|ghs|github_pat)[-_][A-Za-z0-9_\-]{6,}")
_HTML_TAG = re.compile(r"<[^>]{0,200}>")


def clean_reason(text: str, redact: Iterable[str] = ()) -> str:
    """A service's error text made safe to show and log: one line, capped, no secrets."""
    for secret in redact:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    # Error pages can be large; only the start can end up in the capped result.
    text = _SECRET_LIKE.sub("[redacted]", text[: REASON_LIMIT * 40])
    text = _HTML_TAG.sub(" ", text)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(text) > REASON_LIMIT:
        text = text[: REASON_LIMIT - 1].rstrip() + "…"
    return text


def api_error_parts(body: object) -> tuple[str, str]:
    """The (error type, message) in an error body, in the Anthropic, OpenAI or FastAPI shape."""
    if isinstance(body, str | bytes):
        raw = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(raw)
        except ValueError:
            return "", raw
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error", body)
    if isinstance(error, str):
        return "", error
    if not isinstance(error, dict):
        return "", ""
    kind = error.get("type")
    message = error.get("message") or error.get("detail") or body.get("detail")
    if not isinstance(message, str):
        message = json.dumps(message) if message else ""
    return (kind if isinstance(kind, str) else ""), message


# The error object's type when the status says nothing (an error event inside
# a 200 stream, or a gateway answering 200 with an error body).
_CAUSE_BY_TYPE = {
    "authentication_error": "auth",
    "permission_error": "auth",
    "rate_limit_error": "rate_limit",
    "overloaded_error": "overloaded",
    "api_error": "overloaded",
    "timeout_error": "timeout",
}


def describe_error_object(
    body: object, *, status: int, redact: Iterable[str] = ()
) -> ModelUnavailable:
    """A ModelUnavailable for an error object the service sent (any status), with its message."""
    kind, message = api_error_parts(body)
    reason = clean_reason(message, redact)
    if status >= 400:
        text = f"the model service answered with an error ({status})"
    else:
        text = f"the model service answered {status} with an error"
    return ModelUnavailable(
        _CAUSE_BY_TYPE.get(kind, "error"), f"{text}: {reason}" if reason else text
    )


def describe_api_error(exc: Exception, *, redact: Iterable[str] = ()) -> ModelUnavailable:
    """Map an SDK exception to a cause and a short message that names it (no secrets).

    For an HTTP error the service's own message is appended (e.g. a 400 "prompt
    is too long"), cleaned and capped; `redact` are values that must never show.
    """
    redact = list(redact)
    if isinstance(exc, anthropic.APIStatusError):
        _, message = api_error_parts(exc.body)
        reason = clean_reason(message, redact)
        described = _describe_status(exc)
        if described is None:
            return describe_error_object(exc.body, status=exc.status_code, redact=redact)
        if reason:
            return ModelUnavailable(described.cause, f"{described}: {reason}")
        return described
    if isinstance(exc, anthropic.APITimeoutError):
        return ModelUnavailable("timeout", "the model did not answer in time (timeout)")
    if isinstance(exc, anthropic.APIConnectionError):
        return ModelUnavailable(
            "connection", "the model service cannot be reached (connection error)"
        )
    if isinstance(exc, TypeError) and "authentication" in str(exc):
        return ModelUnavailable(
            "auth",
            "no credentials for the model service: set ANTHROPIC_API_KEY "
            "(or ANTHROPIC_BASE_URL for a server that needs no key)",
        )
    if isinstance(exc, ValueError):  # json.JSONDecodeError and pydantic errors among them
        return ModelUnavailable(
            "error",
            f"the model service sent a response that is not a valid Messages API answer "
            f"({type(exc).__name__})",
        )
    if isinstance(exc, AssertionError | AttributeError | KeyError | IndexError):
        # What the SDK's stream accumulator raises on a stream without a
        # message_start, or one whose events lack fields (usage, say).
        return ModelUnavailable(
            "error",
            f"the model service sent an incomplete or malformed response ({type(exc).__name__})",
        )
    return ModelUnavailable("error", f"the model call failed ({type(exc).__name__})")


def _describe_status(exc: anthropic.APIStatusError) -> ModelUnavailable | None:
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
    if isinstance(exc, anthropic.NotFoundError):
        return ModelUnavailable(
            "error", "the model service does not know the configured model (404)"
        )
    if isinstance(exc, anthropic.BadRequestError):
        return ModelUnavailable("error", "the model service rejected the request (400)")
    if exc.status_code >= 400:
        return ModelUnavailable(
            "overloaded" if exc.status_code >= 500 else "error",
            f"the model service answered with an error ({exc.status_code})",
        )
    return None  # an error event in a 200 stream: its error type says more


# Modules the SDK imports on its first request. One of them scans package
# metadata for entry points (~100 ms), which would stall the event loop (and
# every Slack acknowledgement) in the middle of the first busy minute.
_FIRST_REQUEST_IMPORTS = ("anyio._backends._asyncio", "opentelemetry.propagate")


# A response as small as the Messages API sends: building it once builds the SDK's models.
_WARM_UP_MESSAGE: dict[str, Any] = {
    "id": "msg_warm_up",
    "type": "message",
    "role": "assistant",
    "model": "warm-up",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}


def warm_up_sdk(client: anthropic.AsyncAnthropic | None = None) -> None:
    """Do now what the SDK would otherwise do lazily during the first requests.

    That is: import modules, build the response models' schemas (~10 ms, paid by
    the first answer), and, for `client`, look up the platform its headers name.
    """
    for name in _FIRST_REQUEST_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _build_message_models()
    if client is not None and client._platform is None:
        # Otherwise each request looks it up in a worker thread until one lookup has
        # returned: 200 turns at once queued 200 jobs on the thread pool.
        client._platform = get_platform()


@functools.cache
def _build_message_models() -> None:
    Message.model_construct(**_WARM_UP_MESSAGE)


def make_anthropic_client(
    secrets: Secrets, *, max_retries: int, timeout: float
) -> anthropic.AsyncAnthropic:
    """The SDK client for the configured key and base URL (either may be absent)."""
    key = secrets.anthropic_api_key.get_secret_value() if secrets.anthropic_api_key else None
    base_url = secrets.anthropic_base_url or None
    client = anthropic.AsyncAnthropic(
        api_key=key or None,
        base_url=base_url,
        max_retries=max_retries,
        timeout=timeout,
        # The SDK's aiohttp transport (aiohttp is installed for Slack anyway): httpx's pool
        # scans every connection for every request, so 200 turns at once spent more time
        # there than on anything else; it is also cheaper per call. Proxies from the
        # environment are honoured as with the default transport.
        http_client=anthropic.DefaultAioHttpClient(),
        # The SDK builds a span's attributes for every call even when no tracer provider
        # records them (~50 us a call); with one installed (an operator's instrumentation),
        # its spans and the SDK's own environment switches work as usual.
        open_telemetry=None if traces_have_a_consumer() else False,
    )
    if base_url and not has_credentials(client):
        # A local server or open gateway needs no key, but the SDK refuses to send
        # a request without one. Only ever with a base URL: api.anthropic.com
        # never sees the placeholder.
        _log_placeholder_once()
        client = client.with_options(api_key=PLACEHOLDER_API_KEY)
    return client


def traces_have_a_consumer() -> bool:
    """Whether an OpenTelemetry tracer provider is installed, so spans would be recorded."""
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@functools.cache
def _log_placeholder_once() -> None:
    # Said once per process: `archbot eval` builds a client per scenario.
    log.info("ANTHROPIC_BASE_URL is set without a key: sending a placeholder key")


def has_credentials(client: anthropic.AsyncAnthropic) -> bool:
    """Whether the SDK found a credential (a key, ANTHROPIC_AUTH_TOKEN or a profile)."""
    return bool(client.api_key or client.auth_token or client.credentials is not None)


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
        # Values that must never appear in what we log or show (an error text
        # from a gateway may echo the key it was sent).
        self._redact = [v.get_secret_value() for v in (secrets.anthropic_api_key,) if v]
        self.offline = client is None and not secrets.model_configured
        self._semaphore = asyncio.Semaphore(llm.max_concurrency)
        if client is None and not self.offline:
            client = make_anthropic_client(
                secrets, max_retries=llm.max_retries, timeout=llm.timeout_seconds
            )
        if client is not None:
            warm_up_sdk(client)
        self.client = client
        if client is not None and client.auth_token:  # found by the SDK in ANTHROPIC_AUTH_TOKEN
            self._redact.append(client.auth_token)

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
        turn_id: int | None = None,
        defer_usage: bool = False,
    ) -> ModelResult:
        """One Messages API call; raises ModelUnavailable on any failure.

        It is streamed when `on_text` wants the text as it is written (or when
        max_tokens is too large for a plain request). Its usage goes to the
        ledger at once, unless `defer_usage`: then the caller stores
        `result.usage` (`Store.record_usage`), with the answer, before it awaits anything.
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
            # prefix; the marker on the last message block caches the
            # conversation so far. Earlier blocks lose their marker as the
            # thread grows, which the cache ignores: it matches content, and
            # finds the previous breakpoint by looking back from the new one.
            "system": [{"type": "text", "text": system, "cache_control": CACHE}],
            "messages": with_cache_breakpoint(messages),
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
                        await self._refuse_non_stream(stream.response)
                        if on_text is not None:
                            async for text in stream.text_stream:
                                await on_text(text)
                        message: object = await stream.get_final_message()
                else:
                    message = await self.client.messages.create(**params)
            except ModelUnavailable:
                raise
            except anthropic.APIError as exc:
                error = describe_api_error(exc, redact=self._redact)
                status = getattr(exc, "status_code", None)
                log.warning(
                    "model call failed: %s%s: %s",
                    type(exc).__name__,
                    f" (HTTP {status})" if status else "",
                    error,
                )
                raise error from None
            except TimeoutError:
                raise ModelUnavailable(
                    "timeout", "the model did not answer in time (timeout)"
                ) from None
            except Exception as exc:
                # The SDK raises more than APIError: TypeError when it finds no
                # credential, JSONDecodeError on garbage, AssertionError on a
                # stream that is not one. A turn must still end with a reply.
                error = describe_api_error(exc, redact=self._redact)
                log.warning(
                    "model call failed unexpectedly: %s: %s",
                    type(exc).__name__,
                    clean_reason(str(exc), self._redact),
                )
                raise error from None
        message = self._checked_message(message)
        latency_ms = int((time.perf_counter() - started) * 1000)
        # Gateways and local servers may leave usage (or parts of it) out: count zero.
        usage = message.usage
        input_tokens = _tokens(usage, "input_tokens")
        output_tokens = _tokens(usage, "output_tokens")
        cache_read = _tokens(usage, "cache_read_input_tokens")
        cache_write = _tokens(usage, "cache_creation_input_tokens")
        record = UsageRecord(
            model=model_name,
            purpose=purpose,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            latency_ms=latency_ms,
            cost_usd=estimate_cost(
                model_name,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read=cache_read,
                cache_write=cache_write,
            ),
        )
        if not defer_usage:
            self.store.record_usage(
                record, thread_id=thread_id, channel_key=channel_key, user=user, turn_id=turn_id
            )
        TOKENS_INPUT.inc(record.input_tokens)
        TOKENS_OUTPUT.inc(record.output_tokens)
        TOKENS_CACHE_READ.inc(record.cache_read_tokens)
        TOKENS_CACHE_WRITE.inc(record.cache_write_tokens)
        content = [p for p in (block_to_param(b) for b in message.content or []) if p is not None]
        return ModelResult(content=content, stop_reason=message.stop_reason, usage=record)

    def _checked_message(self, message: object) -> Message:
        """The response if it is a Messages API message; else ModelUnavailable with its reason.

        A gateway may answer 200 with an error object, or with an HTML page the
        SDK hands back as a string.
        """
        kind = getattr(message, "type", None)
        if isinstance(message, Message) and kind == "message":
            return message
        if isinstance(message, Message) and kind == "error":
            error = describe_error_object(
                {"error": getattr(message, "error", None)}, status=200, redact=self._redact
            )
        else:
            error = ModelUnavailable(
                "error", "the model service answered with something that is not a message"
            )
        snippet = message.to_json() if isinstance(message, Message) else str(message)
        log.warning(
            "model call failed: HTTP 200 without a message: %s",
            clean_reason(snippet, self._redact),
        )
        raise error

    async def _refuse_non_stream(self, response: Any) -> None:
        """Raise ModelUnavailable if a streaming request got a plain body instead of events.

        Without this the SDK finds no events and fails with a bare AssertionError,
        losing the gateway's own error message.
        """
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            return
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > 65_536:  # enough for any error object; the rest is not read
                break
        log.warning(
            "model call failed: HTTP %s with %s instead of an event stream: %s",
            response.status_code,
            content_type or "no content type",
            clean_reason(body.decode(errors="replace"), self._redact),
        )
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and ("error" in parsed or parsed.get("type") == "error"):
            raise describe_error_object(parsed, status=response.status_code, redact=self._redact)
        raise ModelUnavailable(
            "error",
            "the model service answered a streaming request without a stream "
            f"({content_type.split(';')[0] or 'no content type'})",
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self.client is not None:
            await self.client.close()


def _tokens(usage: object, name: str) -> int:
    value = getattr(usage, name, None)
    return value if isinstance(value, int) and value > 0 else 0
