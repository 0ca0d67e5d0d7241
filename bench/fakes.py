"""The bench's fake services, each run in its own process (so it does not share the GIL with the
code being measured), with a `GET /bench/stats` route that tells the bench what they saw.

    python -m bench.fakes model --port 8765 --latency 1.0 --answer-bytes 1200
    python -m bench.fakes slack --port 8766

The model is `tests.fakes.fake_anthropic`'s, with two things the real API does that the bench
needs: prompt-cache accounting (`PromptCache`: a hit only for a byte-identical prefix ending at a
block boundary the cache wrote, found by looking back from a `cache_control` breakpoint) and a
streamed answer written over time, with the moment each answer's first token left it. Slack is
`tests.fakes.fake_slack`'s Web API as it is, with its calls and messages readable over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.fake_anthropic import FakeAnthropic, request_problem
from tests.fakes.fake_slack import FakeSlack

# The real API's smallest cacheable prefix (Sonnet and Opus); shorter prefixes are not cached.
MIN_CACHEABLE_TOKENS = 1024
# How many block boundaries before a breakpoint the real API checks for an earlier cache entry.
LOOKBACK_BLOCKS = 20
# Connections the fake's socket queues before it accepts them (the kernel caps it at somaxconn).
LISTEN_BACKLOG = 1024
# A sentence of an architect's answer; repeated to the requested length.
ANSWER_SENTENCE = (
    "Keep the feature store's online and offline paths on one definition, and replay a day "
    "of ticks before you trust the backfill. "
)


def tokens_of(text: str) -> int:
    """The fake's token count: about four bytes a token, like the base fake's `input_tokens`."""
    return max(1, len(text.encode()) // 4)


def cache_blocks(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """The request as the prompt cache reads it: (canonical block, has a breakpoint), in the
    cache's order (tools, system, messages). `cache_control` is not part of the content."""
    blocks: list[tuple[str, bool]] = []

    def add(where: str, block: dict[str, Any]) -> None:
        content = {k: v for k, v in block.items() if k != "cache_control"}
        canonical = where + json.dumps(content, sort_keys=True, ensure_ascii=False)
        blocks.append((canonical, bool(block.get("cache_control"))))

    for tool in body.get("tools") or []:
        add("tool:", tool)
    system = body.get("system")
    if isinstance(system, str) and system:
        add("system:", {"type": "text", "text": system})
    elif isinstance(system, list):
        for block in system:
            add("system:", block)
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for j, block in enumerate(content or []):
            # A message boundary is part of the prefix: the same blocks in other messages differ.
            add(f"{message.get('role')}:{i}:{j}:", block)
    if body.get("cache_control") and blocks:
        blocks[-1] = (blocks[-1][0], True)  # automatic caching: a breakpoint on the last block
    return blocks


@dataclass
class PromptCache:
    """The real API's prompt-cache accounting for one fake model: which prefixes it holds."""

    min_tokens: int = MIN_CACHEABLE_TOKENS
    lookback: int = LOOKBACK_BLOCKS
    _held: set[str] = field(default_factory=set)

    def usage(self, body: dict[str, Any]) -> dict[str, int]:
        """(input, cache read, cache write) tokens for this request, as the API bills them; the
        prefixes at its breakpoints are cached from now on."""
        blocks = cache_blocks(body)
        digests: list[str] = []
        cumulative: list[int] = []
        running = hashlib.sha256()
        total = 0
        for canonical, _ in blocks:
            running.update(canonical.encode())
            running.update(b"\x00")
            digests.append(running.hexdigest())
            total += tokens_of(canonical)
            cumulative.append(total)
        breakpoints = [i for i, (_, marked) in enumerate(blocks) if marked]
        read = 0
        for b in breakpoints:
            for k in range(b, max(-1, b - self.lookback - 1), -1):
                if digests[k] in self._held:
                    read = max(read, cumulative[k])
                    break
        write = 0
        for b in breakpoints:
            if cumulative[b] >= self.min_tokens:
                self._held.add(digests[b])
                write = max(write, cumulative[b] - read)
        return {
            "input_tokens": max(0, total - read - write),
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
        }


@dataclass
class BenchModel(FakeAnthropic):
    """The fake Messages API answering `answer_bytes` of text, streamed in `delta_chars` pieces
    `delta_seconds` apart after `latency`, with prompt-cache usage. `first_tokens` records, per
    answered request, its last user text and when its first text delta was written."""

    answer_bytes: int = 1200
    delta_chars: int = 40
    delta_seconds: float = 0.01
    cache: PromptCache = field(default_factory=PromptCache)
    first_tokens: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/bench/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": len(self.message_requests), "first_tokens": self.first_tokens}
        )

    def answer(self) -> str:
        """The answer text: whole sentences up to `answer_bytes`."""
        repeats = max(1, self.answer_bytes // len(ANSWER_SENTENCE))
        return (ANSWER_SENTENCE * repeats).strip()

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        if problem := request_problem(rec.body):
            return web.json_response(
                {"type": "error", "error": {"type": "invalid_request_error", "message": problem}},
                status=400,
            )
        usage = {**self.cache.usage(rec.body), "output_tokens": tokens_of(self.answer())}
        if self.latency:
            await asyncio.sleep(self.latency)
        text = self.answer()
        message = {
            "id": f"msg_{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": rec.body.get("model", "fake"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        said = _last_user_text(rec.body)
        if not rec.body.get("stream"):
            self.first_tokens.append({"said": said, "at": time.monotonic()})
            return web.json_response(message)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
        await send("message_start", {"type": "message_start", "message": start})
        await send(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for n, i in enumerate(range(0, len(text), self.delta_chars)):
            if n == 0:
                self.first_tokens.append({"said": said, "at": time.monotonic()})
            elif self.delta_seconds:
                await asyncio.sleep(self.delta_seconds)
            delta = {"type": "text_delta", "text": text[i : i + self.delta_chars]}
            await send(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        await send("content_block_stop", {"type": "content_block_stop", "index": 0})
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        await send("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return " ".join(str(b.get("text", "")) for b in content or [] if isinstance(b, dict))
    return ""


@dataclass
class BenchSlack(FakeSlack):
    """The fake Slack Web API with what it recorded readable at `GET /bench/stats`."""

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/bench/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        with self._lock:
            calls = [
                {
                    "method": c.method,
                    "at": c.at,
                    "ok": c.ok,
                    "channel": str(c.args.get("channel") or c.args.get("channel_id") or ""),
                    "thread_ts": str(c.args.get("thread_ts") or ""),
                    "ts": str(c.args.get("ts") or ""),
                    "text": bool(c.args.get("markdown_text") or c.args.get("text")),
                }
                for c in self.calls
            ]
            messages = [
                {
                    "channel": m.channel,
                    "ts": m.ts,
                    "thread_ts": m.thread_ts,
                    "chars": len(m.text),
                    "streamed": m.streamed,
                    "streaming": m.streaming,
                }
                for m in self.messages
            ]
        return web.json_response({"calls": calls, "messages": messages})


def main() -> None:
    """Serve one fake on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(description="the bench's fake services")
    parser.add_argument("kind", choices=["model", "slack"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--answer-bytes", type=int, default=1200)
    parser.add_argument("--delta-chars", type=int, default=400)
    parser.add_argument("--delta-seconds", type=float, default=0.0)
    args = parser.parse_args()
    app: web.Application
    if args.kind == "model":
        app = BenchModel(
            latency=args.latency,
            answer_bytes=args.answer_bytes,
            delta_chars=args.delta_chars,
            delta_seconds=args.delta_seconds,
        ).app()
    else:
        app = BenchSlack(url=f"http://127.0.0.1:{args.port}").app()
    # aiohttp's default listen backlog (128) is smaller than the bench's bursts: 200 connections
    # at once overflow it, and a dropped SYN is retried only after a second, which a real API
    # would not do to us.
    web.run_app(
        app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=LISTEN_BACKLOG
    )


if __name__ == "__main__":
    main()
