"""A scripted Anthropic Messages API on 127.0.0.1 that the real SDK talks to.

Queue replies with `reply_text`, `reply_tool_use`, `reply_error` or `reply_raw`;
every request is recorded (path, headers, JSON body). With the queue empty it
answers with `default_text` (or an echo of the last user message). Both
JSON and SSE (`"stream": true`) responses are produced, like the real API.

Like the real API it answers 400 `invalid_request_error` to a request the real
API would refuse (`request_problem`): role order, `tool_use`/`tool_result`
pairing, empty text blocks, unknown top-level keys, more than four cache
breakpoints. `gateway=True` plays an Anthropic-compatible gateway in front of
an OpenAI-style backend that refuses unknown fields (top-level `cache_control`
among them) the way LiteLLM relays it. Neither checks the API key.

Runs in a background thread with its own event loop, so it serves
in-process tests and subprocesses (`archbot chat`) alike. Also runnable:
`python -m tests.fakes.fake_anthropic --port 8765 [--latency 1.0]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# The Messages API's top-level request fields (anthropic 2.14's MessageCreateParams,
# plus `stream` and the sampling fields the API still accepts).
MESSAGES_API_KEYS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "cache_control",
        "container",
        "diagnostics",
        "inference_geo",
        "output_config",
        "service_tier",
        "speed",
        "user_profile_id",
        "workspace_id",
    }
)
# What an OpenAI-style backend behind a gateway can be given; the rest is refused.
GATEWAY_KEYS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
    }
)
MAX_CACHE_BREAKPOINTS = 4


def request_problem(body: dict[str, Any]) -> str | None:
    """What the real Messages API would say about this request body, or None if it is valid."""
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    for key in body:
        if key not in MESSAGES_API_KEYS:
            return f"{key}: Extra inputs are not permitted"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    breakpoints = 1 if body.get("cache_control") else 0
    system = body.get("system")
    if isinstance(system, list):
        for j, block in enumerate(system):
            problem = _block_problem(block, f"system.{j}")
            if problem:
                return problem
            breakpoints += bool(block.get("cache_control"))
    for tool in body.get("tools") or []:
        breakpoints += bool(isinstance(tool, dict) and tool.get("cache_control"))
    previous_role = None
    pending_uses: list[str] = []  # tool_use ids of the previous assistant message
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i == 0 and role != "user":
            return 'messages: first message must use the "user" role'
        if role == previous_role:
            return (
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        content = message.get("content")
        last = i == len(messages) - 1
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            blocks = content
        else:
            return f"messages.{i}.content: Input should be a valid list"
        if not blocks and not (last and role == "assistant"):
            return (
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        for j, block in enumerate(blocks):
            problem = _block_problem(block, f"messages.{i}.content.{j}")
            if problem:
                return problem
            breakpoints += bool(block.get("cache_control"))
            nested = block.get("content") if block.get("type") == "tool_result" else None
            for k, inner in enumerate(nested if isinstance(nested, list) else []):
                problem = _block_problem(inner, f"messages.{i}.content.{j}.content.{k}")
                if problem:
                    return problem
                breakpoints += bool(inner.get("cache_control"))
        if pending_uses:
            # The results must open the next message, one per tool_use of the previous one.
            leading = itertools.takewhile(lambda b: b.get("type") == "tool_result", blocks)
            answered = {b.get("tool_use_id") for b in leading}
            missing = [u for u in pending_uses if u not in answered]
            if missing:
                return (
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
        for j, block in enumerate(blocks):
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in pending_uses:
                return (
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {block.get('tool_use_id')}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
        pending_uses = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
        if pending_uses and role == "user":
            return f"messages.{i}: `tool_use` blocks can only be in `assistant` messages"
        if last and pending_uses:
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(pending_uses)}. Each `tool_use` block must have "
                "a corresponding `tool_result` block in the next message."
            )
        if last and role == "assistant" and blocks:
            tail = blocks[-1]
            if tail.get("type") == "text" and tail.get("text", "") != tail.get("text", "").rstrip():
                return "messages: final assistant content cannot end with trailing whitespace"
        previous_role = role
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        return (
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )
    return None


def _block_problem(block: object, where: str) -> str | None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return f"{where}: Input should be a valid content block"
    if block["type"] == "text":
        text = block.get("text")
        if not isinstance(text, str) or not text:
            return f"{where}.text: text content blocks must be non-empty"
        if not text.strip():
            return f"{where}.text: text content blocks must contain non-whitespace text"
    return None


def gateway_problem(body: dict[str, Any]) -> str | None:
    """What a gateway relays from a backend that refuses unknown fields, or None."""
    for key in body:
        if key not in GATEWAY_KEYS:
            return (
                "litellm.BadRequestError: OpenAIException - "
                f"Unrecognized request argument supplied: {key}"
            )
    return None


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes


@dataclass
class FakeAnthropic:
    latency: float = 0.0
    stream_delay: float = 0.0  # seconds between streamed text deltas (a slow writer)
    default_text: str | None = None
    always_error: int | None = None  # status for every message request (e.g. 529)
    gateway: bool = False  # refuse unknown top-level fields like an OpenAI-style backend
    requests: list[RecordedRequest] = field(default_factory=list)
    _queue: deque[dict[str, Any]] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # scripting -------------------------------------------------------------------

    def reply_text(self, text: str, *, usage: dict[str, int] | None = None) -> None:
        """Queue a plain text answer."""
        self._queue.append(
            {"content": [{"type": "text", "text": text}], "stop": "end_turn", "usage": usage}
        )

    def reply_tool_use(self, name: str, tool_input: dict[str, Any], *, text: str = "") -> None:
        """Queue an answer that calls one tool."""
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        content.append(
            {
                "type": "tool_use",
                "id": f"toolu_{next(self._ids):04d}",
                "name": name,
                "input": tool_input,
            }
        )
        self._queue.append({"content": content, "stop": "tool_use"})

    def reply_error(
        self, status: int, kind: str = "overloaded_error", message: str = "Overloaded"
    ) -> None:
        """Queue an error response (the SDK may retry it, consuming more of the queue)."""
        self._queue.append({"error": (status, kind, message)})

    def reply_raw(
        self, status: int, body: object, *, content_type: str = "application/json"
    ) -> None:
        """Queue a response exactly as given (a dict is sent as JSON), e.g. a 200 error object."""
        self._queue.append({"raw": (status, body, content_type)})

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Recorded POST /v1/messages requests."""
        return [r for r in self.requests if r.path == "/v1/messages"]

    # server ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models/{model_id}", self._model)
        return app

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        rec = RecordedRequest(
            request.method, request.path, dict(request.headers), json.loads(raw or b"{}"), raw
        )
        with self._lock:
            self.requests.append(rec)
        return rec

    async def _model(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        if self.always_error:
            kind = "authentication_error" if self.always_error == 401 else "overloaded_error"
            return web.json_response(
                {"type": "error", "error": {"type": kind, "message": "scripted failure"}},
                status=self.always_error,
            )
        return web.json_response(
            {
                "type": "model",
                "id": model_id,
                "display_name": model_id,
                "created_at": "2026-01-01T00:00:00Z",
            }
        )

    async def _count_tokens(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        return web.json_response({"input_tokens": max(1, len(rec.raw) // 4)})

    def _next_script(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.always_error:
            return {"error": (self.always_error, "overloaded_error", "Overloaded")}
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        text = self.default_text
        if text is None:
            last = body.get("messages", [{}])[-1]
            content = last.get("content")
            said = (
                content
                if isinstance(content, str)
                else " ".join(
                    b.get("text", "")
                    for b in content or []
                    if isinstance(b, dict) and b.get("type") == "text"
                )
            )
            text = f"Fake answer to: {said[:200]}"
        return {"content": [{"type": "text", "text": text}], "stop": "end_turn"}

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        if request.transport is None or request.transport.is_closing():
            # The client went away while we "thought" (a stopped turn): answer no one,
            # and leave the scripted answer for the next request.
            raise web.HTTPRequestTimeout()
        if self.gateway and (problem := gateway_problem(rec.body)):
            return web.json_response(
                {"error": {"message": problem, "type": None, "param": None, "code": "400"}},
                status=400,
            )
        if problem := request_problem(rec.body):
            return web.json_response(
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": problem},
                    "request_id": f"req_{next(self._ids):06d}",
                },
                status=400,
            )
        script = self._next_script(rec.body)
        if "raw" in script:
            status, raw_body, content_type = script["raw"]
            text = raw_body if isinstance(raw_body, str) else json.dumps(raw_body)
            return web.Response(text=text, status=status, content_type=content_type)
        if "error" in script:
            status, kind, message = script["error"]
            return web.json_response(
                {"type": "error", "error": {"type": kind, "message": message}},
                status=status,
                headers={"retry-after-ms": "50"} if status in (429, 529) else None,
            )
        input_tokens = max(1, len(rec.raw) // 4)
        usage = script.get("usage") or {}
        message = {
            "id": f"msg_{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": rec.body.get("model", "fake"),
            "content": script["content"],
            "stop_reason": script["stop"],
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.get("input_tokens", input_tokens),
                "output_tokens": usage.get("output_tokens", 20),
                "cache_read_input_tokens": usage.get("cache_read_input_tokens", 0),
                "cache_creation_input_tokens": usage.get("cache_creation_input_tokens", 0),
            },
        }
        if not rec.body.get("stream"):
            return web.json_response(message)
        return await self._sse(request, message)

    async def _sse(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        start = dict(message, content=[], stop_reason=None)
        start["usage"] = dict(message["usage"], output_tokens=1)
        await send("message_start", {"type": "message_start", "message": start})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                await send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                text = block["text"]
                step = 40 if self.stream_delay else 400
                for i in range(0, len(text), step):
                    if self.stream_delay and i:
                        await asyncio.sleep(self.stream_delay)
                    await send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": text[i : i + step]},
                        },
                    )
            else:
                await send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    },
                )
                await send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": json.dumps(block["input"]),
                        },
                    },
                )
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
        await send("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp


class ServerThread:
    """Runs an aiohttp application on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: web.Application, port: int = 0) -> None:
        self._app = app
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake server did not start")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description="scripted fake Anthropic Messages API")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--text", default=None, help="answer every request with this text")
    args = parser.parse_args()
    fake = FakeAnthropic(latency=args.latency, default_text=args.text)
    web.run_app(fake.app(), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
