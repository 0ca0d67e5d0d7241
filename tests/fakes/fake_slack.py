"""A fake Slack Web API (and Socket Mode endpoint) on 127.0.0.1 that slack-sdk talks to.

Every call is recorded (method, merged arguments from query string, form and
JSON body, headers). Query strings are stripped from the method name, since
slack-sdk sends some arguments there (`auth.test?team_id=`, `reactions.add?…`).
`fail_next` scripts errors such as a 429 with Retry-After. Messages the bot
writes are kept like Slack keeps them, whether posted (`chat.postMessage`) or
streamed (`chat.startStream` / `appendStream` / `stopStream`); `thread_texts`
returns what a person sees in a thread. `stream_error` makes chat.startStream
fail (e.g. "unknown_method", a workspace without streaming). Response URLs of
slash commands (`/commands/...`) are recorded too. `send_socket_event` pushes
an Events API envelope to connected Socket Mode clients and records their acks.
`users.info` answers from `users` like Slack does: it needs a bot or user token
and the `users:read` scope (take it out of `scopes` to see `missing_scope`).
`delays` makes a method answer late, as a busy Slack does (seconds per method).
Reply files go through files.getUploadURLExternal, the upload URL and
files.completeUploadExternal (a bot token, `files:write`, the stated length);
`uploaded_files` returns them with their bytes. chat.getPermalink answers in
the `https://acme.slack.com/archives/C/pTS` form.

Agent features, as strict as Slack: `agents.sessions.setStatus` works only for an app
declared an agent (`agent=True`; otherwise it answers `not_allowed_token_type`, as the
assistant status does here), with a bot token, `chat:write` and `assistant:write` (take it
out of `scopes` to see `missing_scope`), a valid status, the thread, a title of at most 200 characters) keeps
each thread's status history in `sessions`, and `chat.stopStream(session_status=)` moves
it too. Streaming calls check their `chunks` (`markdown_text`, `task_update` with id,
title, status and `url` sources, `plan_update`, `blocks`) and `blocks` (`markdown`,
`context_actions` with `feedback_buttons`); `task_updates` lists the cards a thread's
streams carried. `assistant.threads.setSuggestedPrompts` (at most four prompts, each a
title and a message) and `setTitle` are recorded in `suggested_prompts` and `titles`.
`stop_session` is Slack's stop button: it ends the thread's open streams and returns the
`agent_session_stopped` envelope to deliver. `send_socket_interactive` pushes a
`block_actions` payload over Socket Mode.

Serve it with `tests.fakes.fake_anthropic.ServerThread(FakeSlack().app())` (set `.url` to the
server's URL), or run `python -m tests.fakes.fake_slack --port 8766`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

BOT_USER_ID = "U0BOT0001"
BOT_ID = "B0BOT0001"
TEAM_ID = "T0TEAM001"


@dataclass
class SlackCall:
    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    status: int = 200  # HTTP status
    ok: bool = True  # the API's "ok" field
    at: float = 0.0


def person(user_id: str, handle: str, display: str, real: str = "") -> dict[str, Any]:
    """A `user` object as users.info returns it (the fields archbot reads, and a few more)."""
    return {
        "id": user_id,
        "team_id": TEAM_ID,
        "name": handle,
        "deleted": False,
        "real_name": real or display,
        "is_bot": False,
        "profile": {
            "display_name": display,
            "display_name_normalized": display,
            "real_name": real or display,
            "real_name_normalized": real or display,
        },
    }


def default_users() -> dict[str, dict[str, Any]]:
    """The people of the recorded payloads (Carol has only a real name, as many do)."""
    return {
        "U0ALICE01": person("U0ALICE01", "alice", "Alice", "Alice Liddell"),
        "U0BOB0002": person("U0BOB0002", "bob", "Bob", "Bob Builder"),
        "W0CAROL03": person("W0CAROL03", "carol", "", "Carol Danvers"),
    }


DEFAULT_SCOPES = frozenset(
    {
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "im:history",
        "chat:write",
        "reactions:write",
        "commands",
        "assistant:write",
        "users:read",
        "files:write",
    }
)

# Slack's limit on `markdown_text`, per call and for a whole (streamed) message.
MARKDOWN_LIMIT = 12_000


@dataclass
class SlackMessage:
    """A message the bot wrote, as a person in the channel would see it."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    streamed: bool = False
    streaming: bool = False  # a stream still open (chat.stopStream not yet called)
    updates: int = 0  # calls that changed the text
    at: float = 0.0
    blocks: list[dict[str, Any]] = field(default_factory=list)  # blocks below the text
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task cards by id, latest


@dataclass
class SlackUpload:
    """A file uploaded through the upload URL flow; `channel` is set once it is completed."""

    file_id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str = ""
    channel: str = ""
    thread_ts: str | None = None


FILE_METHODS = frozenset(
    {"files.getUploadURLExternal", "files.completeUploadExternal", "chat.getPermalink"}
)
AGENT_METHODS = frozenset(
    {
        "agents.sessions.setStatus",
        "assistant.threads.setSuggestedPrompts",
        "assistant.threads.setTitle",
    }
)
SESSION_STATUSES = frozenset({"active", "processing", "suspended", "closed"})
TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
SESSION_TITLE_LIMIT = 200
_TASK_FIELDS = frozenset({"type", "id", "title", "status", "details", "output", "sources"})
_BLOCK_TYPES = frozenset(
    {"markdown", "section", "context", "context_actions", "divider", "header", "rich_text"}
)


def _json_list(value: Any) -> list[Any] | None:
    """A JSON array argument (sent as JSON, or as a form field holding JSON); None if not one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, list) else None


def _plain_text(value: Any, limit: int) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") == "plain_text"
        and isinstance(value.get("text"), str)
        and 0 < len(value["text"]) <= limit
    )


def block_problem(blocks: list[Any]) -> str | None:
    """Why Slack would refuse these blocks (None when they are fine): the shapes archbot sends."""
    if len(blocks) > 50:
        return "too many blocks"
    markdown = 0
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            return f"unknown block {block!r:.60}"
        if block["type"] == "markdown":
            if not isinstance(block.get("text"), str) or not block["text"]:
                return "markdown block without text"
            markdown += len(block["text"])
        if block["type"] == "context_actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= 5:
                return "context_actions needs 1 to 5 elements"
            for element in elements:
                problem = _feedback_problem(element)
                if problem:
                    return problem
        if len(str(block.get("block_id") or "")) > 255:
            return "block_id too long"
    return "markdown blocks over 12,000 characters" if markdown > MARKDOWN_LIMIT else None


def _feedback_problem(element: Any) -> str | None:
    if not isinstance(element, dict) or element.get("type") not in (
        "feedback_buttons",
        "icon_button",
    ):
        return "context_actions holds feedback_buttons or icon_button elements"
    if element["type"] == "icon_button":
        return None
    if len(str(element.get("action_id") or "")) > 255:
        return "action_id too long"
    for side in ("positive_button", "negative_button"):
        button = element.get(side)
        if not isinstance(button, dict) or not _plain_text(button.get("text"), 75):
            return f"{side} needs plain_text text of at most 75 characters"
        value = button.get("value")
        if not isinstance(value, str) or not 0 < len(value) <= 2000:
            return f"{side} needs a value of at most 2000 characters"
        label = button.get("accessibility_label")
        if label is not None and (not isinstance(label, str) or len(label) > 75):
            return f"{side} accessibility_label over 75 characters"
    return None


def chunk_problem(chunks: list[Any]) -> str | None:
    """Why Slack would refuse these streaming chunks (None when they are fine)."""
    for chunk in chunks:
        if not isinstance(chunk, dict):
            return "a chunk is not an object"
        kind = chunk.get("type")
        if kind == "markdown_text":
            if not isinstance(chunk.get("text"), str):
                return "markdown_text chunk without text"
        elif kind == "task_update":
            if set(chunk) - _TASK_FIELDS:
                return f"unknown task_update fields {sorted(set(chunk) - _TASK_FIELDS)}"
            for name in ("id", "title"):
                if not isinstance(chunk.get(name), str) or not chunk[name].strip():
                    return f"task_update without {name}"
            if chunk.get("status") not in TASK_STATUSES:
                return f"task_update status {chunk.get('status')!r}"
            sources = chunk.get("sources", [])
            if not isinstance(sources, list):
                return "task_update sources is not a list"
            for source in sources:
                if (
                    not isinstance(source, dict)
                    or source.get("type") != "url"
                    or not str(source.get("url") or "").startswith(("https://", "http://"))
                    or not isinstance(source.get("text"), str)
                    or not source["text"]
                ):
                    return f"bad task_update source {source!r:.80}"
        elif kind == "plan_update":
            if not isinstance(chunk.get("title"), str) or not chunk["title"]:
                return "plan_update without title"
        elif kind == "blocks":
            inner = chunk.get("blocks")
            if not isinstance(inner, list):
                return "blocks chunk without blocks"
            problem = block_problem(inner)
            if problem:
                return problem
        else:
            return f"unknown chunk type {kind!r}"
    return None


def _markdown_of(args: dict[str, Any]) -> str:
    """The markdown a streaming call carries (`markdown_text` or markdown_text chunks)."""
    text = str(args.get("markdown_text") or "")
    chunks = args.get("chunks") or []
    if isinstance(chunks, str):
        chunks = json.loads(chunks)
    for chunk in chunks:
        if chunk.get("type") == "markdown_text":
            text += str(chunk.get("text") or "")
    return text


@dataclass
class FakeSlack:
    bot_user_id: str = BOT_USER_ID
    bot_id: str = BOT_ID
    team_id: str = TEAM_ID
    # An Enterprise Grid install: the org's id, and whether the app is installed org-wide.
    enterprise_id: str | None = None
    enterprise_install: bool = False
    assistant_status_supported: bool = False
    agent: bool = False  # the app is declared an agent: agents.sessions.* work
    stream_error: str | None = None  # chat.startStream answers this error (None: it works)
    messages: list[SlackMessage] = field(default_factory=list)
    calls: list[SlackCall] = field(default_factory=list)
    responses: list[SlackCall] = field(default_factory=list)  # posts to response_url
    socket_acks: list[dict[str, Any]] = field(default_factory=list)
    # (channel, thread_ts) -> messages returned by conversations.replies
    threads: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=default_users)  # for users.info
    scopes: set[str] = field(default_factory=lambda: set(DEFAULT_SCOPES))  # the bot token's
    delays: dict[str, float] = field(default_factory=dict)  # method -> seconds before answering
    _failures: dict[str, deque[tuple[int, dict[str, Any], dict[str, str]]]] = field(
        default_factory=dict
    )
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    url: str = ""
    uploads: dict[str, SlackUpload] = field(default_factory=dict)  # file id -> upload
    # (channel, ts) of people's messages delivered as events: Slack holds them before it sends
    # the event, so chat.getPermalink finds them too.
    user_messages: set[tuple[str, str]] = field(default_factory=set)
    # (channel, thread_ts) -> the agent session's statuses in order, its title, prompts, titles
    sessions: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    session_titles: dict[tuple[str, str], str] = field(default_factory=dict)
    session_warning: str | None = None  # e.g. "missing_agent_session_stopped_event_subscription"
    suggested_prompts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    titles: dict[tuple[str, str], str] = field(default_factory=dict)

    # scripting -----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 429,
        *,
        error: str = "ratelimited",
        retry_after: int = 1,
        count: int = 1,
    ) -> None:
        """The next `count` calls of `method` fail (429 carries Retry-After)."""
        headers = {"Retry-After": str(retry_after)} if status == 429 else {}
        with self._lock:
            queue = self._failures.setdefault(method, deque())
            for _ in range(count):
                queue.append((status, {"ok": False, "error": error}, headers))

    def calls_of(self, method: str) -> list[SlackCall]:
        """Recorded calls of one Web API method (successful or not)."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def posts(self, *, channel: str | None = None, thread_ts: str | None = None) -> list[SlackCall]:
        """Successful chat.postMessage calls, optionally in one channel or thread."""
        return [
            c
            for c in self.calls_of("chat.postMessage")
            if c.ok
            and (channel is None or c.args.get("channel") == channel)
            and (thread_ts is None or c.args.get("thread_ts") == thread_ts)
        ]

    def sent_texts(self) -> list[str]:
        """Every text the bot sent to be shown: chat.* call bodies (text, markdown_text, stream
        chunks, blocks) and response_url posts, one entry per field, in call order."""
        with self._lock:
            calls = [c for c in self.calls if c.method.startswith("chat.")] + list(self.responses)
        texts: list[str] = []
        for call in calls:
            texts.extend(str(call.args[k]) for k in ("text", "markdown_text") if call.args.get(k))
            texts.append(_markdown_of({"chunks": call.args.get("chunks")}))
            blocks = call.args.get("blocks") or []
            texts.extend(
                json.dumps(b) for b in (json.loads(blocks) if isinstance(blocks, str) else blocks)
            )
        return [t for t in texts if t]

    def thread_messages(
        self, channel: str, thread_ts: str | None, *, finished: bool = True
    ) -> list[SlackMessage]:
        """The bot's messages in a thread (None: the channel's top level), oldest first.

        With `finished`, a stream still being written is left out.
        """
        with self._lock:
            return [
                m
                for m in self.messages
                if m.channel == channel
                and m.thread_ts == thread_ts
                and not (finished and m.streaming)
            ]

    def messages_in(self, channel: str) -> list[SlackMessage]:
        """All the bot's messages in a channel (any thread, streams still open included)."""
        with self._lock:
            return [m for m in self.messages if m.channel == channel]

    def thread_texts(self, channel: str, thread_ts: str | None) -> list[str]:
        """The final text of each of the bot's messages in a thread, posted or streamed."""
        return [m.text for m in self.thread_messages(channel, thread_ts)]

    def note_event(self, body: dict[str, Any]) -> None:
        """Remember the message an Events API envelope carries, as Slack has it before sending."""
        event = body.get("event") or {}
        channel, ts = event.get("channel"), event.get("ts")
        if event.get("type") in ("app_mention", "message") and channel and ts:
            with self._lock:
                self.user_messages.add((str(channel), str(ts)))

    def task_updates(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Every task_update chunk the bot streamed into a thread, in call order."""
        with self._lock:
            calls = [
                c
                for c in self.calls
                if c.ok and c.method in ("chat.startStream", "chat.appendStream", "chat.stopStream")
            ]
            streams = {
                m.ts for m in self.messages if m.channel == channel and m.thread_ts == thread_ts
            }
        found: list[dict[str, Any]] = []
        for call in calls:
            if call.args.get("channel") != channel:
                continue
            if call.method == "chat.startStream":
                if call.args.get("thread_ts") != thread_ts:
                    continue
            elif call.args.get("ts") not in streams:
                continue
            chunks = _json_list(call.args.get("chunks")) or []
            found.extend(c for c in chunks if c.get("type") == "task_update")
        return found

    def stop_session(self, channel: str, thread_ts: str, user: str = "U0ALICE01") -> dict[str, Any]:
        """Slack's stop button: end the thread's open streams; return the event envelope to send."""
        with self._lock:
            stopped = [
                m
                for m in self.messages
                if m.channel == channel and m.thread_ts == thread_ts and m.streaming
            ]
            for message in stopped:
                message.streaming = False
        n = next(_event_seq)
        now = f"{int(time.time())}.{n:06d}"
        return {
            "token": "verification-token-not-real",
            "team_id": self.team_id,
            "api_app_id": "A0APP0001",
            "event": {
                "type": "agent_session_stopped",
                "channel": channel,
                "thread_ts": thread_ts,
                "user": user,
                "streaming_message_ts": [m.ts for m in stopped],
                "event_ts": now,
            },
            "type": "event_callback",
            "event_id": f"Ev{int(time.time())}{n:05d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
        }

    def message(self, channel: str, ts: str) -> SlackMessage | None:
        """One message by channel and ts."""
        with self._lock:
            return next((m for m in self.messages if m.channel == channel and m.ts == ts), None)

    # server ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/commands/{rest:.*}", self._response_url)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_get("/socket", self._socket)
        app.on_startup.append(self._remember_loop)
        app.on_shutdown.append(self._close_sockets)
        return app

    async def _remember_loop(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close()

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            raw = await request.read()
            if raw:
                args.update(json.loads(raw))
        elif request.can_read_body:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].split("?", 1)[0]
        args = await self._args(request)
        call = SlackCall(method, args, dict(request.headers), at=time.monotonic())
        with self._lock:
            queue = self._failures.get(method)
            failure = queue.popleft() if queue else None
            self.calls.append(call)
            delay = self.delays.get(method, 0.0)
        if delay:
            await asyncio.sleep(delay)
        if failure is not None:
            status, body, headers = failure
            call.status, call.ok = status, False
            return web.json_response(body, status=status, headers=headers)
        auth = request.headers.get("Authorization", "")
        if method == "users.info":
            body = self._users_info(args, auth)
        elif method in FILE_METHODS:
            body = self._files(method, args, auth)
        elif method in AGENT_METHODS:
            body = self._agent(method, args, auth)
        else:
            body = self._answer(method, args)
        call.ok = bool(body.get("ok"))
        return web.json_response(body)

    def _next_ts(self) -> str:
        # A range of its own, so the bot's ts never equals a test event's `{time}.{n:06d}`.
        return f"{int(time.time())}.{500000 + next(self._ts):06d}"

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://acme.slack.com/",
                "team": "Acme",
                "user": "archbot",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": self.enterprise_install,
                **({"enterprise_id": self.enterprise_id} if self.enterprise_id else {}),
            }
        if method.startswith("chat.") and method.endswith("Stream"):
            return self._stream(method, args)
        if method == "chat.postMessage":
            blocks: list[Any] = []
            if args.get("blocks") is not None:
                blocks = _json_list(args.get("blocks")) or []
                if not blocks or block_problem(blocks):
                    return {"ok": False, "error": "invalid_blocks"}
                if args.get("markdown_text"):
                    # Slack takes markdown_text only on its own (no blocks, no text).
                    return {"ok": False, "error": "invalid_arguments"}
            shown = "".join(b["text"] for b in blocks if b.get("type") == "markdown")
            text = str(shown or args.get("markdown_text") or args.get("text") or "")
            if len(text) > MARKDOWN_LIMIT:
                return {"ok": False, "error": "msg_too_long"}
            ts = self._next_ts()
            with self._lock:
                self.messages.append(
                    SlackMessage(
                        str(args.get("channel")),
                        ts,
                        args.get("thread_ts") or None,
                        text,
                        at=time.monotonic(),
                        blocks=[b for b in blocks if b.get("type") != "markdown"],
                    )
                )
            message = {
                "type": "message",
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
                "ts": ts,
                "text": args.get("markdown_text") or args.get("text") or "",
            }
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            return {"ok": True, "channel": args.get("channel"), "ts": ts, "message": message}
        if method == "conversations.replies":
            messages = self.threads.get((str(args.get("channel")), str(args.get("ts"))))
            if messages is None:
                return {"ok": False, "error": "thread_not_found"}
            return {
                "ok": True,
                "messages": messages,
                "has_more": False,
                "response_metadata": {"next_cursor": ""},
            }
        if method in ("reactions.add", "reactions.remove"):
            return {"ok": True}
        if method == "assistant.threads.setStatus":
            if self.assistant_status_supported:
                return {"ok": True}
            return {"ok": False, "error": "not_allowed_token_type"}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.url.replace("http://", "ws://") + "/socket"}
        return {"ok": False, "error": "unknown_method"}

    def _users_info(self, args: dict[str, Any], authorization: str) -> dict[str, Any]:
        """users.info with Slack's checks: a token, the users:read scope, a known user."""
        token = authorization.removeprefix("Bearer ").strip() or str(args.get("token") or "")
        if not token:
            return {"ok": False, "error": "not_authed"}
        if not token.startswith(("xoxb-", "xoxp-")):
            return {"ok": False, "error": "invalid_auth"}
        if "users:read" not in self.scopes:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": "users:read",
                "provided": ",".join(sorted(self.scopes)),
            }
        user_id = str(args.get("user") or "")
        if not user_id:
            return {"ok": False, "error": "invalid_arguments"}
        user = self.users.get(user_id)
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}

    def _stream(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """chat.startStream / appendStream / stopStream, with Slack's argument rules and limits."""
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        chunks: list[Any] = []
        if args.get("chunks") is not None:
            parsed = _json_list(args.get("chunks"))
            if parsed is None or chunk_problem(parsed):
                return {"ok": False, "error": "invalid_chunks"}
            if args.get("markdown_text"):
                return {"ok": False, "error": "invalid_arguments"}  # one or the other
            chunks = parsed
        text = _markdown_of(args)
        if len(text) > MARKDOWN_LIMIT:
            return {"ok": False, "error": "msg_too_long"}
        tasks = {str(c["id"]): c for c in chunks if c.get("type") == "task_update"}
        if method == "chat.startStream":
            if self.stream_error:
                return {"ok": False, "error": self.stream_error}
            in_channel = not channel.startswith("D")
            if not args.get("thread_ts") or (
                in_channel and not (args.get("recipient_team_id") and args.get("recipient_user_id"))
            ):
                return {"ok": False, "error": "invalid_arguments"}
            if args.get("task_display_mode") not in (None, "timeline", "plan"):
                return {"ok": False, "error": "invalid_arguments"}
            ts = self._next_ts()
            with self._lock:
                self.messages.append(
                    SlackMessage(
                        channel,
                        ts,
                        str(args["thread_ts"]),
                        text,
                        streamed=True,
                        streaming=True,
                        updates=1,
                        at=time.monotonic(),
                        tasks=dict(tasks),
                    )
                )
            return {"ok": True, "channel": channel, "ts": ts}
        if method not in ("chat.appendStream", "chat.stopStream"):
            return {"ok": False, "error": "unknown_method"}
        blocks: list[Any] = []
        status = args.get("session_status")
        if method == "chat.stopStream":
            if args.get("blocks") is not None:
                blocks = _json_list(args.get("blocks")) or []
                if not blocks or block_problem(blocks):
                    return {"ok": False, "error": "invalid_blocks"}
            if status is not None and status not in SESSION_STATUSES:
                return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            message = next(
                (m for m in self.messages if m.channel == channel and m.ts == args.get("ts")),
                None,
            )
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            if not message.streaming:
                return {"ok": False, "error": "message_not_in_streaming_state"}
            if method == "chat.appendStream" and not text and not chunks:
                return {"ok": False, "error": "invalid_arguments"}
            if len(message.text) + len(text) > MARKDOWN_LIMIT:
                return {"ok": False, "error": "msg_too_long"}
            message.text += text
            message.updates += 1 if text else 0
            message.tasks.update(tasks)
            if method == "chat.stopStream":
                message.streaming = False
                message.blocks = blocks
                if status is not None and message.thread_ts:
                    self.sessions.setdefault((channel, message.thread_ts), []).append(status)
            message.at = time.monotonic()
        return {"ok": True, "channel": channel, "ts": message.ts}

    def session_statuses(self, channel: str, thread_ts: str) -> list[str]:
        """The statuses a thread's agent session went through, in order."""
        with self._lock:
            return list(self.sessions.get((channel, thread_ts), []))

    def _agent(self, method: str, args: dict[str, Any], authorization: str) -> dict[str, Any]:
        """agents.sessions.setStatus and the assistant pane's methods, with Slack's checks."""
        token = authorization.removeprefix("Bearer ").strip() or str(args.get("token") or "")
        if not token:
            return {"ok": False, "error": "not_authed"}
        if not token.startswith("xoxb-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        needed = {"chat:write", "assistant:write"}
        if method != "agents.sessions.setStatus":
            needed = {"assistant:write"}
        if not needed <= self.scopes:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": ",".join(sorted(needed - self.scopes)),
                "provided": ",".join(sorted(self.scopes)),
            }
        channel = str(args.get("channel_id") or "")
        thread_ts = str(args.get("thread_ts") or "")
        if method == "agents.sessions.setStatus" and not self.agent:
            return {"ok": False, "error": "not_allowed_token_type"}
        if method == "agents.sessions.setStatus":
            status, title = args.get("status"), args.get("title")
            if status not in SESSION_STATUSES:
                return {"ok": False, "error": "invalid_arguments"}
            if not channel or not thread_ts:
                return {"ok": False, "error": "invalid_arguments"}
            if title is not None and (
                not isinstance(title, str) or len(title) > SESSION_TITLE_LIMIT
            ):
                return {"ok": False, "error": "invalid_arguments"}
            key = (channel, thread_ts)
            with self._lock:
                if key not in self.sessions and title:
                    self.session_titles[key] = title  # a title is used on creation only
                self.sessions.setdefault(key, []).append(str(status))
            answer: dict[str, Any] = {"ok": True, "status": status}
            if self.session_warning:
                answer["warning"] = self.session_warning
                answer["response_metadata"] = {"warnings": [self.session_warning]}
            return answer
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if method == "assistant.threads.setTitle":
            title = args.get("title")
            if not thread_ts or not isinstance(title, str) or not title.strip():
                return {"ok": False, "error": "invalid_arguments"}
            with self._lock:
                self.titles[(channel, thread_ts)] = title
            return {"ok": True}
        prompts = _json_list(args.get("prompts"))
        if (
            prompts is None
            or not 0 < len(prompts) <= 4
            or not all(
                isinstance(p, dict)
                and set(p) == {"title", "message"}
                and all(isinstance(v, str) and v.strip() for v in p.values())
                for p in prompts
            )
        ):
            return {"ok": False, "error": "invalid_arguments"}
        if args.get("title") is not None and not isinstance(args.get("title"), str):
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            self.suggested_prompts[(channel, thread_ts)] = {
                "title": args.get("title"),
                "prompts": prompts,
            }
        return {"ok": True}

    async def _response_url(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self._lock:
            self.responses.append(
                SlackCall(
                    request.path,
                    json.loads(raw or b"{}"),
                    dict(request.headers),
                    at=time.monotonic(),
                )
            )
        return web.Response(text="ok")

    # Socket Mode ---------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                "connection_info": {"app_id": "A0APP0001"},
            }
        )
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    with self._lock:
                        self.socket_acks.append(json.loads(msg.data))
        finally:
            self._sockets.remove(ws)
        return ws

    @property
    def socket_connected(self) -> bool:
        """True when a Socket Mode client is connected."""
        return bool(self._sockets)

    def send_socket_event(
        self, body: dict[str, Any], envelope_id: str, retry_attempt: int = 0
    ) -> None:
        """Push one Events API envelope over every connected Socket Mode connection."""
        envelope = {
            "envelope_id": envelope_id,
            "payload": body,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        assert self._loop is not None
        self.note_event(body)

        async def send() -> None:
            for ws in list(self._sockets):
                await ws.send_json(envelope)

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(5)

    def send_socket_interactive(self, payload: dict[str, Any], envelope_id: str) -> None:
        """Push one interactivity payload (a `block_actions` click) over Socket Mode."""
        envelope = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": "interactive",
            "accepts_response_payload": False,
        }
        assert self._loop is not None

        async def send() -> None:
            for ws in list(self._sockets):
                await ws.send_json(envelope)

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(5)

    # Files (reply attachments) and permalinks ----------------------------------------------------

    def uploaded_files(self) -> list[SlackUpload]:
        """Uploads completed into a channel (files.completeUploadExternal), in order."""
        with self._lock:
            return [u for u in self.uploads.values() if u.channel]

    def _files(self, method: str, args: dict[str, Any], authorization: str) -> dict[str, Any]:
        """files.getUploadURLExternal / completeUploadExternal and chat.getPermalink, as strict
        as Slack: a bot token, the files:write scope, and the uploaded length must match."""
        token = authorization.removeprefix("Bearer ").strip() or str(args.get("token") or "")
        if not token:
            return {"ok": False, "error": "not_authed"}
        if not token.startswith(("xoxb-", "xoxp-")):
            return {"ok": False, "error": "invalid_auth"}
        if method == "chat.getPermalink":
            channel, ts = str(args.get("channel") or ""), str(args.get("message_ts") or "")
            if not channel or not ts:
                return {"ok": False, "error": "invalid_arguments"}
            found = self.message(channel, ts)
            with self._lock:
                known = found is not None or (channel, ts) in self.user_messages
            if not known:
                return {"ok": False, "error": "message_not_found"}
            link = f"https://acme.slack.com/archives/{channel}/p{ts.replace('.', '')}"
            if found is not None and found.thread_ts and found.thread_ts != ts:
                link += f"?thread_ts={found.thread_ts}&cid={channel}"
            return {"ok": True, "channel": channel, "permalink": link}
        if "files:write" not in self.scopes:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": "files:write",
                "provided": ",".join(sorted(self.scopes)),
            }
        if method == "files.getUploadURLExternal":
            filename, length = str(args.get("filename") or ""), str(args.get("length") or "")
            if not filename or not length.isdigit() or int(length) < 1:
                return {"ok": False, "error": "invalid_arguments"}
            file_id = f"F0FILE{next(self._ts):05d}"
            with self._lock:
                self.uploads[file_id] = SlackUpload(file_id, filename, int(length))
            return {"ok": True, "upload_url": f"{self.url}/upload/v1/{file_id}", "file_id": file_id}
        try:
            files = json.loads(str(args.get("files") or ""))
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        channel, thread_ts = str(args.get("channel_id") or ""), args.get("thread_ts") or None
        if not isinstance(files, list) or not files or (thread_ts and not channel):
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            done = []
            for item in files:
                upload = self.uploads.get(str(item.get("id")))
                if upload is None or upload.content is None:
                    return {"ok": False, "error": "file_not_found"}
                done.append(upload)
            for item, upload in zip(files, done, strict=True):
                upload.title = str(item.get("title") or upload.filename)
                upload.channel, upload.thread_ts = channel, thread_ts
        return {"ok": True, "files": [{"id": u.file_id, "title": u.title} for u in done]}

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: takes the bytes (raw or multipart) once, of exactly the stated length."""
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            part = next(iter(form.values()), b"")
            data = part.file.read() if isinstance(part, web.FileField) else str(part).encode()
        else:
            data = await request.read()
        with self._lock:
            upload = self.uploads.get(request.match_info["file_id"])
            if upload is None or upload.content is not None:
                return web.Response(status=404, text="Not Found")
            if len(data) != upload.length:
                return web.Response(status=400, text="length mismatch")
            upload.content = data
        return web.Response(text=f"OK - {len(data)}")


# Events API requests, as Slack sends them ---------------------------------------------------

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "slack"
_event_seq = itertools.count(1)


def load_payload(name: str) -> dict[str, Any]:
    """A recorded payload from tests/data/slack/NAME.json."""
    with (DATA_DIR / f"{name}.json").open() as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def event_body(template: str, **event: Any) -> dict[str, Any]:
    """A recorded envelope with fresh `event_id` and `ts` (unless given) and event fields replaced.

    Pass `thread_ts=None` to drop a field.
    """
    body = load_payload(template)
    n = next(_event_seq)
    body["event_id"] = event.pop("event_id", f"Ev{int(time.time())}{n:05d}")
    inner = body["event"]
    ts = event.pop("ts", f"{int(time.time())}.{n:06d}")
    inner["ts"] = inner["event_ts"] = ts
    for key, value in event.items():
        if value is None:
            inner.pop(key, None)
        else:
            inner[key] = value
    return body


def feedback_click(
    value: str,
    *,
    channel: str,
    message_ts: str,
    user: str = "U0ALICE01",
    team: str = TEAM_ID,
    action_id: str = "archbot_feedback",
) -> dict[str, Any]:
    """A `block_actions` payload as Slack sends it when someone clicks a feedback button."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "alice", "name": "alice", "team_id": team},
        "api_app_id": "A0APP0001",
        "token": "verification-token-not-real",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
            "thread_ts": message_ts,
        },
        "trigger_id": "1764150000.111.triggernotreal",
        "team": {"id": team, "domain": "acme"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "general"},
        "message": {"type": "message", "ts": message_ts, "user": BOT_USER_ID, "bot_id": BOT_ID},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0TEAM001/1/notreal",
        "actions": [
            {
                "type": "feedback_buttons",
                "action_id": action_id,
                "block_id": "feedback",
                "text": {"type": "plain_text", "text": "👍", "emoji": True},
                "value": value,
                "action_ts": f"{int(time.time())}.000100",
            }
        ],
    }


def interaction_request(payload: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    """The raw form body and headers of a signed interactivity request (`payload=<json>`)."""
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    return raw, signed_headers(secret, raw, content_type="application/x-www-form-urlencoded")


def signed_headers(
    secret: str,
    body: bytes,
    timestamp: int | None = None,
    *,
    content_type: str = "application/json",
) -> dict[str, str]:
    """Headers of a request signed like Slack does: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def event_request(
    body: dict[str, Any], secret: str, *, retry: int | None = None, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a signed Events API delivery (a retry when `retry` is set)."""
    raw = json.dumps(body).encode()
    headers = signed_headers(secret, raw, timestamp)
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return raw, headers


def main() -> None:
    """`python -m tests.fakes.fake_slack --port 8766`: serve the fake Web API for manual runs."""
    import argparse

    parser = argparse.ArgumentParser(description="fake Slack Web API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    fake = FakeSlack(url=f"http://127.0.0.1:{args.port}")
    web.run_app(fake.app(), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
