"""A fake Discord (REST API + gateway websocket) on 127.0.0.1 that discord.py talks to.

REST lives under `/api/v10`, the gateway websocket at `/gateway`; `GET
/api/v10/gateway/bot` hands out that ws:// URL, the way real Discord hands
out wss://gateway.discord.gg. Every REST call is recorded (method, path,
JSON body, status) so tests can assert thread creation, message content and
allowed_mentions; attachments (multipart `payload_json` + `files[n]`) land
in `files` with their bytes. Tests push gateway dispatches (`MESSAGE_CREATE`, ...) with
`push` / `message` / `push_thread_create`, from any thread.

Like the real service: JSON is served with `Content-Type: application/json`
exactly (discord.py compares the header verbatim), 429s carry a `Via` header
and a `retry_after` body (without `Via` discord.py takes a 429 for a
Cloudflare ban), content over 2000 chars is a 400 with code 50035, and
creating a thread from a message gives the thread the message's id and
dispatches THREAD_CREATE to the bot. Message components are validated as
Discord does (action rows of at most 5 buttons, at most 5 rows, known button
styles, a `custom_id` of 1-100 chars, unique in the message, on every button
but a link; a label or an emoji); a bot may edit or delete only its own
messages. `click` dispatches INTERACTION_CREATE for a button that is on a
stored message (the message and its components ride along, as from Discord);
an interaction is answered once, within 3 seconds, with a callback type valid
for it (6 and 7 only for components), and follow-ups need that answer first.
Gateway frames are plain-text JSON:
discord.py only inflates binary frames, so `compress=zlib-stream` in the
query is accepted and ignored.

Runs in a `ServerThread` (tests/fakes/fake_anthropic.py), so it serves
in-process tests and `archbot run` subprocesses alike.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

API = "/api/v10"
EPOCH_MS = 1420070400000
INTERACTION_DEADLINE = 3.0  # seconds Discord waits for an interaction's first answer
EPHEMERAL = 1 << 6
# Callback types each interaction type may answer with (2: command, 3: component).
CALLBACK_TYPES = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}}
BUTTON_STYLES = {1, 2, 3, 4, 5, 6}  # 5: link (url, no custom_id), 6: premium (sku_id)
# Exactly this: discord.py compares `headers['content-type'] == 'application/json'`.
JSON = "application/json"


def snowflake(n: int) -> str:
    """A plausible Discord id (timestamp in the high bits) made unique by `n`."""
    return str(((int(time.time() * 1000) - EPOCH_MS) << 22) + n)


def now_iso() -> str:
    """Discord's timestamp format."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())


def user_payload(uid: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    """A Discord user object."""
    return {
        "id": uid,
        "username": name,
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
        "flags": 0,
    }


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A response with the exact content type discord.py expects."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": JSON, **(headers or {})},
    )


def invalid_form(reason: str) -> web.Response:
    """Discord's 400 for a body it will not take (code 50035)."""
    return json_response(
        {"message": "Invalid Form Body", "code": 50035, "errors": {"_errors": [reason]}},
        status=400,
    )


def component_errors(components: Any) -> str | None:
    """Why Discord would refuse a message's components (buttons in action rows); None: fine.

    Only buttons are modelled here; the bot sends nothing else.
    """
    if components is None:
        return None
    if not isinstance(components, list) or len(components) > 5:
        return "components: a list of at most 5 action rows"
    seen: set[str] = set()
    for row in components:
        if not isinstance(row, dict) or row.get("type") != 1:
            return "a top-level component must be an action row (type 1)"
        buttons = row.get("components")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 5:
            return "an action row holds 1 to 5 buttons"
        for button in buttons:
            if not isinstance(button, dict) or button.get("type") != 2:
                return "only buttons (type 2) in an action row here"
            style = button.get("style")
            if style not in BUTTON_STYLES:
                return f"unknown button style {style!r}"
            if style == 5:
                if not button.get("url") or "custom_id" in button:
                    return "a link button has a url and no custom_id"
            elif style == 6:
                if not button.get("sku_id"):
                    return "a premium button needs a sku_id"
            else:
                custom_id = button.get("custom_id")
                if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 100:
                    return "custom_id must be 1 to 100 characters"
                if custom_id in seen:
                    return f"custom_id {custom_id!r} is used twice in the message"
                seen.add(custom_id)
            label = button.get("label")
            if label is not None and (not isinstance(label, str) or len(label) > 80):
                return "a button label is at most 80 characters"
            if style != 6 and not label and not button.get("emoji"):
                return "a button needs a label or an emoji"
    return None


def content_error(content: Any) -> web.Response | None:
    """Discord's 400 for content over 2000 characters."""
    if isinstance(content, str) and len(content) > 2000:
        return json_response(
            {
                "message": "Invalid Form Body",
                "code": 50035,
                "errors": {
                    "content": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_MAX_LENGTH",
                                "message": "Must be 2000 or fewer in length.",
                            }
                        ]
                    }
                },
            },
            status=400,
        )
    return None


@dataclass
class RestCall:
    """One recorded REST request."""

    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    body: Any
    status: int = 0
    created: str | None = None  # the id of the message this call created
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class Issued:
    """An interaction dispatched to the bot, and how it was answered."""

    id: str
    type: int  # 2: application command, 3: message component
    token: str
    at: float  # time.monotonic() when it was dispatched
    message: dict[str, Any] | None = None  # the clicked message
    callback_type: int | None = None
    ephemeral: bool = False
    content: str = ""


@dataclass
class FakeDiscord:
    """State of the fake service: one guild with #architecture, users, channels, messages."""

    bot_id: str = "1100000000000000001"
    bot_name: str = "archbot"
    app_id: str = "1100000000000000002"
    guild_id: str = "1100000000000000010"
    channel_id: str = "1100000000000000011"  # #architecture
    channel_name: str = "architecture"
    bot_role_id: str = "1100000000000000003"  # the role Discord makes for the bot on invite
    message_content_intent: bool = True  # False: close the gateway with 4014 after IDENTIFY
    valid_token: str = "test-not-real"
    url: str = ""  # REST base (http://127.0.0.1:PORT/api/v10), set by whoever serves it
    calls: list[RestCall] = field(default_factory=list)
    identifies: list[dict[str, Any]] = field(default_factory=list)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (channel, name, bytes)
    threads: list[dict[str, Any]] = field(
        default_factory=list
    )  # active threads sent in GUILD_CREATE
    deleted: dict[str, dict[str, Any]] = field(default_factory=dict)  # message id -> message
    interactions: dict[str, Issued] = field(default_factory=dict)  # by token
    interaction_deadline: float = INTERACTION_DEADLINE
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _failures: list[tuple[str, re.Pattern[str], int, int, int]] = field(default_factory=list)
    _holds: list[tuple[str, re.Pattern[str], threading.Event]] = field(default_factory=list)
    _sockets: list[_GatewaySession] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self.channels[self.channel_id] = {
            "id": self.channel_id,
            "type": 0,
            "guild_id": self.guild_id,
            "name": self.channel_name,
            "position": 0,
            "permission_overwrites": [],
            "topic": None,
            "nsfw": False,
            "parent_id": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }

    # ids and objects ----------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh snowflake."""
        return snowflake(next(self._ids))

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot's own user object."""
        return user_payload(self.bot_id, self.bot_name, bot=True)

    def message_payload(
        self,
        channel_id: str,
        content: str,
        author: dict[str, Any],
        *,
        guild: bool = True,
        mentions: list[dict[str, Any]] | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """A MESSAGE_CREATE-shaped message object."""
        data: dict[str, Any] = {
            "id": message_id or self.new_id(),
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions or [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if guild:
            data["guild_id"] = self.guild_id
            data["member"] = {
                "roles": [],
                "joined_at": now_iso(),
                "deaf": False,
                "mute": False,
                "flags": 0,
            }
        return data

    def thread_payload(
        self, thread_id: str, parent_id: str, name: str, owner_id: str
    ) -> dict[str, Any]:
        """A public thread channel object (type 11)."""
        return {
            "id": thread_id,
            "type": 11,
            "guild_id": self.guild_id,
            "parent_id": parent_id,
            "owner_id": owner_id,
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": now_iso(),
                "locked": False,
            },
        }

    def add_thread(
        self,
        parent_id: str,
        name: str,
        owner_id: str,
        *,
        thread_id: str | None = None,
        archived: bool = False,
    ) -> dict[str, Any]:
        """Create a thread the bot did not start (listed in GUILD_CREATE's active threads)."""
        data = self.thread_payload(thread_id or self.new_id(), parent_id, name, owner_id)
        data["thread_metadata"]["archived"] = archived
        with self._lock:
            self.channels[data["id"]] = data
            self.threads.append(data)
        return data

    def seed_message(self, channel_id: str, content: str, author: dict[str, Any]) -> dict[str, Any]:
        """Store a message in a channel's history without dispatching it."""
        data = self.message_payload(channel_id, content, author)
        with self._lock:
            self.messages.setdefault(channel_id, []).append(data)
        return data

    def guild_payload(self) -> dict[str, Any]:
        """GUILD_CREATE data for the one guild."""
        with self._lock:
            channels = [c for c in self.channels.values() if c.get("type") == 0]
            threads = list(self.threads)
        return {
            "id": self.guild_id,
            "name": "Acme Trading",
            "icon": None,
            "owner_id": "1100000000000000099",
            "features": [],
            "roles": [
                {
                    "id": self.guild_id,
                    "name": "@everyone",
                    "permissions": "1071698660929",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                },
                {
                    "id": self.bot_role_id,
                    "name": self.bot_name,
                    "permissions": "311385196608",
                    "position": 1,
                    "color": 0,
                    "hoist": False,
                    "managed": True,
                    "mentionable": True,
                    "flags": 0,
                    "tags": {"bot_id": self.bot_id},
                },
            ],
            "emojis": [],
            "stickers": [],
            "member_count": 3,
            "large": False,
            "unavailable": False,
            "joined_at": now_iso(),
            "channels": channels,
            "threads": threads,
            "members": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "system_channel_flags": 0,
            "afk_timeout": 300,
        }

    # scripting ----------------------------------------------------------------------

    def rate_limit(self, method: str, path_regex: str, times: int = 1) -> None:
        """Answer the next `times` matching requests with a 429 (retry_after 0.05 s)."""
        self.fail(method, path_regex, 429, times=times)

    def fail(
        self, method: str, path_regex: str, status: int, code: int = 0, times: int = 1
    ) -> None:
        """Answer the next `times` matching requests with an error (429s the way Discord does)."""
        with self._lock:
            self._failures.append((method.upper(), re.compile(path_regex), status, code, times))

    def hold(self, method: str, path_regex: str) -> threading.Event:
        """Keep matching requests waiting (recorded, unanswered) until the returned event is set."""
        release = threading.Event()
        with self._lock:
            self._holds.append((method.upper(), re.compile(path_regex), release))
        return release

    def rest(self, method: str | None = None, path_regex: str | None = None) -> list[RestCall]:
        """Recorded REST calls, optionally filtered by method and a path regex."""
        with self._lock:
            calls = list(self.calls)
        return [
            c
            for c in calls
            if (method is None or c.method == method.upper())
            and (path_regex is None or re.fullmatch(path_regex, c.path))
        ]

    def sent_messages(self, channel_id: str | None = None) -> list[dict[str, Any]]:
        """JSON bodies of successful message posts (channels and interaction follow-ups).

        A message the bot deleted since is gone from the channel, so it is left out.
        """
        out = []
        for c in self.rest("POST"):
            if c.status != 200 or not isinstance(c.body, dict) or c.created in self.deleted:
                continue
            m = re.fullmatch(r"/channels/(\d+)/messages", c.path)
            if m and (channel_id is None or m.group(1) == channel_id):
                out.append(c.body)
            elif channel_id is None and re.fullmatch(r"/webhooks/\d+/[^/]+", c.path):
                out.append(c.body)
        return out

    @property
    def connected(self) -> bool:
        """True once a client has identified and received READY."""
        return any(s.ready for s in self._sockets)

    def push(self, event: str, data: dict[str, Any]) -> None:
        """Send a dispatch to every identified gateway session (callable from any thread)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("no gateway session yet")
        sessions = [s for s in self._sockets if s.ready]
        if not sessions:
            raise RuntimeError("no identified gateway session")

        async def send() -> None:
            for s in sessions:
                await s.dispatch(event, data)

        if _running_loop() is loop:
            loop.create_task(send())
        else:
            asyncio.run_coroutine_threadsafe(send(), loop).result(10)

    def close_sessions(self, code: int, reason: bytes = b"closed by the fake") -> None:
        """Close every identified gateway session with a close code (callable from any thread)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("no gateway session yet")
        sessions = [s for s in self._sockets if s.ready]

        async def close() -> None:
            for session in sessions:
                await session.ws.close(code=code, message=reason)

        if _running_loop() is loop:
            loop.create_task(close())
        else:
            asyncio.run_coroutine_threadsafe(close(), loop).result(10)

    def message(
        self,
        content: str,
        *,
        channel_id: str | None = None,
        author: dict[str, Any] | None = None,
        mention_bot: bool = False,
        mention_bot_role: bool = False,
        dm: bool = False,
        fields: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Post a user message: store it in the channel and dispatch MESSAGE_CREATE.

        `fields` sets other message fields as Discord would send them: `type` for a
        system notice, `message_reference` + `message_snapshots` for a forward, ...
        """
        author = author or user_payload("1100000000000000050", "alice")
        mentions = [self.bot_user] if mention_bot else []
        target = channel_id or self.channel_id
        data = self.message_payload(target, content, author, guild=not dm, mentions=mentions)
        if mention_bot_role:
            data["mention_roles"] = [self.bot_role_id]
        data.update(fields or {})
        with self._lock:
            self.messages.setdefault(target, []).append(data)
        self.push("MESSAGE_CREATE", data)
        return data

    def interaction(
        self,
        options: list[dict[str, Any]],
        *,
        channel_id: str | None = None,
        member_flags: bool = True,
    ) -> dict[str, Any]:
        """Dispatch an /archbot application command invocation.

        `member_flags=False` leaves `flags` out of `member`, as Discord has been seen
        to send it, which discord.py 2.7.1 cannot parse.
        """
        target = channel_id or self.channel_id
        channel = self.channels.get(target, {"id": target, "type": 0})
        data: dict[str, Any] = {
            "id": self.new_id(),
            "application_id": self.app_id,
            "type": 2,
            "token": f"interaction-token-{next(self._ids)}",
            "version": 1,
            "guild_id": self.guild_id,
            "channel_id": target,
            "channel": channel,
            "member": {
                "user": user_payload("1100000000000000050", "alice"),
                "roles": [],
                "joined_at": now_iso(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "1071698660929",
            },
            "app_permissions": "1071698660929",
            "attachment_size_limit": 10 * 1024 * 1024,
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": self.guild_id},
            "context": 0,
            "data": {"id": "1100000000000000077", "name": "archbot", "type": 1, "options": options},
        }
        if not member_flags:
            del data["member"]["flags"]
        self._issue(data)
        self.push("INTERACTION_CREATE", data)
        return data

    def find_message(self, message_id: str) -> dict[str, Any] | None:
        """A stored message by id, in whichever channel it is."""
        with self._lock:
            for messages in self.messages.values():
                for m in messages:
                    if m["id"] == message_id:
                        return m
        return None

    def click(
        self,
        message_id: str,
        custom_id: str,
        *,
        user: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A person clicks a button on a stored message: dispatch the component interaction.

        Like Discord, only a button that is on the message (and enabled) can be clicked;
        the payload carries the message with its components.
        """
        message = self.find_message(message_id)
        if message is None:
            raise AssertionError(f"no message {message_id} to click on")
        buttons = [
            b
            for row in message.get("components") or []
            for b in row.get("components") or []
            if b.get("custom_id") == custom_id and not b.get("disabled")
        ]
        if not buttons:
            raise AssertionError(f"message {message_id} has no button {custom_id!r}")
        user = user or user_payload("1100000000000000050", "alice")
        target = message["channel_id"]
        channel = self.channels.get(target, {"id": target, "type": 1})
        data: dict[str, Any] = {
            "id": self.new_id(),
            "application_id": self.app_id,
            "type": 3,
            "token": f"interaction-token-{next(self._ids)}",
            "version": 1,
            "channel_id": target,
            "channel": channel,
            "message": json.loads(json.dumps(message)),
            "app_permissions": "1071698660929",
            "attachment_size_limit": 10 * 1024 * 1024,
            "locale": "en-US",
            "entitlements": [],
            "data": {"custom_id": custom_id, "component_type": 2},
        }
        if channel.get("guild_id"):
            data["guild_id"] = channel["guild_id"]
            data["guild_locale"] = "en-US"
            data["member"] = {
                "user": user,
                "roles": [],
                "joined_at": now_iso(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "1071698660929",
            }
            data["authorizing_integration_owners"] = {"0": self.guild_id}
            data["context"] = 0
        else:
            data["user"] = user
            data["authorizing_integration_owners"] = {"0": self.guild_id}
            data["context"] = 1
        self._issue(data, message)
        self.push("INTERACTION_CREATE", data)
        return data

    def _issue(self, data: dict[str, Any], message: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.interactions[data["token"]] = Issued(
                data["id"], data["type"], data["token"], time.monotonic(), message
            )

    def answer_to(self, interaction: dict[str, Any]) -> Issued:
        """How the bot answered an interaction this fake dispatched."""
        with self._lock:
            return self.interactions[interaction["token"]]

    # server -------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application: REST under /api/v10 and the gateway at /gateway."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        r = app.router
        r.add_get(API + "/users/@me", self._me)
        r.add_get(API + "/oauth2/applications/@me", self._app_info)
        r.add_get(API + "/gateway/bot", self._gateway_bot)
        r.add_get(API + "/gateway", self._gateway_bot)
        r.add_put(API + "/applications/{app}/commands", self._sync_commands)
        r.add_put(API + "/applications/{app}/guilds/{guild}/commands", self._sync_commands)
        r.add_get(API + "/channels/{cid}", self._get_channel)
        r.add_patch(API + "/channels/{cid}", self._edit_channel)
        r.add_post(API + "/channels/{cid}/typing", self._typing)
        r.add_get(API + "/channels/{cid}/messages", self._history)
        r.add_get(API + "/channels/{cid}/messages/{mid}", self._get_message)
        r.add_post(API + "/channels/{cid}/messages", self._create_message)
        r.add_patch(API + "/channels/{cid}/messages/{mid}", self._edit_message)
        r.add_delete(API + "/channels/{cid}/messages/{mid}", self._delete_message)
        r.add_post(API + "/channels/{cid}/messages/{mid}/threads", self._create_thread)
        r.add_post(API + "/users/@me/channels", self._create_dm)
        r.add_post(API + "/interactions/{iid}/{token}/callback", self._interaction_callback)
        r.add_post(API + "/webhooks/{app}/{token}", self._followup)
        r.add_patch(API + "/webhooks/{app}/{token}/messages/@original", self._edit_original)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self._loop = asyncio.get_running_loop()
        if not request.path.startswith(API):
            return await handler(request)  # type: ignore[no-any-return]
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        call = RestCall(request.method, request.path[len(API) :], dict(request.query), body)
        with self._lock:
            self.calls.append(call)
        request["call"] = call
        with self._lock:
            holds = [e for m, p, e in self._holds if m == call.method and p.fullmatch(call.path)]
        for release in holds:
            # Wait in a worker thread: the gateway and other requests keep being served.
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)
        response: web.StreamResponse
        needs_auth = not call.path.startswith(("/interactions/", "/webhooks/"))
        if needs_auth and request.headers.get("Authorization") != f"Bot {self.valid_token}":
            response = json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        elif (failure := self._take_failure(call)) is not None:
            status, code = failure
            if status == 429:
                response = json_response(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": 0.05,
                        "global": False,
                    },
                    status=429,
                    headers={"Via": "1.1 google", "Retry-After": "1", "X-RateLimit-Scope": "user"},
                )
            else:
                response = json_response({"message": f"error {code}", "code": code}, status=status)
        else:
            response = await handler(request)
        call.status = response.status
        return response

    def _take_failure(self, call: RestCall) -> tuple[int, int] | None:
        with self._lock:
            for i, (method, pattern, status, code, times) in enumerate(self._failures):
                if method == call.method and pattern.fullmatch(call.path):
                    if times <= 1:
                        del self._failures[i]
                    else:
                        self._failures[i] = (method, pattern, status, code, times - 1)
                    return status, code
        return None

    async def _me(self, request: web.Request) -> web.Response:
        return json_response(self.bot_user)

    async def _app_info(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "id": self.app_id,
                "name": self.bot_name,
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": user_payload("1100000000000000099", "owner"),
                "verify_key": "0" * 64,
                "flags": 1 << 19,  # GATEWAY_MESSAGE_CONTENT_LIMITED
                "bot": self.bot_user,
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": f"ws://127.0.0.1:{request.url.port}/gateway",
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _sync_commands(self, request: web.Request) -> web.Response:
        commands = await _json(request) or []
        out = [dict(c, id=self.new_id(), application_id=self.app_id, version="1") for c in commands]
        return json_response(out)

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel = self.channels.get(request.match_info["cid"])
        if channel is None:
            return json_response({"message": "Unknown Channel", "code": 10003}, status=404)
        return json_response(channel)

    async def _edit_channel(self, request: web.Request) -> web.Response:
        channel = self.channels.get(request.match_info["cid"])
        if channel is None:
            return json_response({"message": "Unknown Channel", "code": 10003}, status=404)
        body = await _json(request) or {}
        if "archived" in body and "thread_metadata" in channel:
            channel["thread_metadata"]["archived"] = body["archived"]
        if "name" in body:
            channel["name"] = body["name"]
        return json_response(channel)

    async def _typing(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _history(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        with self._lock:
            msgs = list(self.messages.get(cid, []))
        before = request.query.get("before")
        if before:
            msgs = [m for m in msgs if int(m["id"]) < int(before)]
        limit = int(request.query.get("limit", "50"))
        return json_response(list(reversed(msgs))[:limit])  # newest first, like Discord

    async def _get_message(self, request: web.Request) -> web.Response:
        for m in self.messages.get(request.match_info["cid"], []):
            if m["id"] == request.match_info["mid"]:
                return json_response(m)
        return json_response({"message": "Unknown Message", "code": 10008}, status=404)

    async def _create_message(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        files: list[tuple[str, bytes]] = []
        if request.content_type == "multipart/form-data":
            body, files = await _multipart_message(request)
        else:
            body = await _json(request) or {}
        content = body.get("content") or ""
        too_long = content_error(content)
        if too_long is not None:
            return too_long
        bad = component_errors(body.get("components"))
        if bad is not None:
            return invalid_form(bad)
        channel = self.channels.get(cid)
        if channel is not None and channel.get("thread_metadata", {}).get("archived"):
            return json_response({"message": "Thread is archived", "code": 50083}, status=400)
        data = self.message_payload(cid, content, self.bot_user, guild=channel is not None)
        data["components"] = body.get("components") or []
        data["attachments"] = [
            {"id": self.new_id(), "filename": name, "size": len(raw)} for name, raw in files
        ]
        with self._lock:
            self.messages.setdefault(cid, []).append(data)
            self.files.extend((cid, name, raw) for name, raw in files)
        request["call"].created = data["id"]
        return json_response(data)

    def _own_message(self, cid: str, mid: str) -> dict[str, Any] | web.Response:
        """The bot's stored message, or Discord's error for someone else's or a missing one."""
        with self._lock:
            found = next((m for m in self.messages.get(cid, []) if m["id"] == mid), None)
        if found is None:
            return json_response({"message": "Unknown Message", "code": 10008}, status=404)
        if found["author"]["id"] != self.bot_id:
            return json_response(
                {"message": "Cannot edit a message authored by another user", "code": 50005},
                status=403,
            )
        return found

    def _apply_edit(self, message: dict[str, Any], body: dict[str, Any]) -> web.Response | None:
        """Apply a message edit's content and components, or answer why not."""
        if "content" in body:
            too_long = content_error(body["content"])
            if too_long is not None:
                return too_long
        bad = component_errors(body.get("components"))
        if bad is not None:
            return invalid_form(bad)
        with self._lock:
            if "content" in body:
                message["content"] = body["content"] or ""
            if "components" in body:
                message["components"] = body["components"] or []
            message["edited_timestamp"] = now_iso()
        return None

    async def _edit_message(self, request: web.Request) -> web.Response:
        found = self._own_message(request.match_info["cid"], request.match_info["mid"])
        if isinstance(found, web.Response):
            return found
        refused = self._apply_edit(found, await _json(request) or {})
        return refused or json_response(found)

    async def _delete_message(self, request: web.Request) -> web.Response:
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        found = self._own_message(cid, mid)
        if isinstance(found, web.Response):
            return found
        with self._lock:
            self.messages[cid].remove(found)
            self.deleted[mid] = found
        return web.Response(status=204)

    async def _create_thread(self, request: web.Request) -> web.Response:
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        body = await _json(request) or {}
        name = body.get("name") or ""
        if not 1 <= len(name) <= 100:
            return json_response({"message": "Invalid Form Body", "code": 50035}, status=400)
        if mid in self.channels:
            return json_response(
                {"message": "A thread has already been created for this message", "code": 160004},
                status=400,
            )
        data = self.thread_payload(mid, cid, name, self.bot_id)  # thread id == starter message id
        with self._lock:
            self.channels[mid] = data
        # Real Discord tells the creator about its new thread over the gateway.
        sessions = [s for s in self._sockets if s.ready]
        for s in sessions:
            await s.dispatch("THREAD_CREATE", dict(data, newly_created=True))
        return json_response(data, status=201)

    async def _create_dm(self, request: web.Request) -> web.Response:
        body = await _json(request) or {}
        cid = self.new_id()
        data = {
            "id": cid,
            "type": 1,
            "recipients": [user_payload(body.get("recipient_id", "0"), "someone")],
        }
        self.channels[cid] = data
        return json_response(data)

    async def _interaction_body(self, request: web.Request) -> dict[str, Any]:
        """An interaction answer's JSON; its attachments (multipart) are kept in `files`."""
        if request.content_type != "multipart/form-data":
            return dict(await _json(request) or {})
        body, files = await _multipart_message(request)
        self.files.extend(("interaction", name, data) for name, data in files)
        return body

    def _answered(self, token: str) -> Issued | None:
        with self._lock:
            issued = self.interactions.get(token)
        return issued if issued is not None and issued.callback_type is not None else None

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        body = await self._interaction_body(request)
        with self._lock:
            issued = self.interactions.get(request.match_info["token"])
        unknown = json_response({"message": "Unknown interaction", "code": 10062}, status=404)
        if issued is None or issued.id != request.match_info["iid"]:
            return unknown
        if time.monotonic() - issued.at > self.interaction_deadline:
            return unknown  # Discord forgets an interaction not answered within 3 s
        if issued.callback_type is not None:
            return json_response(
                {"message": "Interaction has already been acknowledged.", "code": 40060},
                status=400,
            )
        kind = body.get("type")
        if kind not in CALLBACK_TYPES.get(issued.type, set()):
            return invalid_form(f"callback type {kind!r} is not valid for this interaction")
        data = body.get("data") or {}
        resource: dict[str, Any] = {"type": kind}
        if kind == 4:
            refused = content_error(data.get("content")) or (
                invalid_form(bad) if (bad := component_errors(data.get("components"))) else None
            )
            if refused is not None:
                return refused
            resource["message"] = self.message_payload(
                "0", data.get("content", ""), self.bot_user, guild=False
            )
            resource["message"]["flags"] = int(data.get("flags") or 0)
        elif kind == 7:
            clicked = self.find_message(issued.message["id"]) if issued.message else None
            if clicked is None:
                return json_response({"message": "Unknown Message", "code": 10008}, status=404)
            refused = self._apply_edit(clicked, data)
            if refused is not None:
                return refused
            resource["message"] = clicked
        with self._lock:
            issued.callback_type = kind
            issued.ephemeral = bool(int(data.get("flags") or 0) & EPHEMERAL)
            issued.content = str(data.get("content") or "")
        return json_response(
            {
                "interaction": {
                    "id": issued.id,
                    "type": issued.type,
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": issued.ephemeral,
                },
                "resource": resource,
            }
        )

    async def _followup(self, request: web.Request) -> web.Response:
        if self._answered(request.match_info["token"]) is None:
            return json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        body = await self._interaction_body(request)
        return json_response(
            self.message_payload("0", body.get("content", ""), self.bot_user, guild=False)
        )

    async def _edit_original(self, request: web.Request) -> web.Response:
        if self._answered(request.match_info["token"]) is None:
            return json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        body = await _json(request) or {}
        return json_response(
            self.message_payload("0", body.get("content", ""), self.bot_user, guild=False)
        )

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = _GatewaySession(self, ws, dict(request.query), request.url.port or 0)
        self._sockets.append(session)
        try:
            await session.run()
        finally:
            self._sockets.remove(session)
        return ws


async def _multipart_message(
    request: web.Request,
) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """A message with attachments, as Discord takes it: `payload_json` plus `files[n]` parts."""
    # The middleware has read the body already, so it is parsed from the cached bytes.
    raw = await request.read()
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    body: dict[str, Any] = {}
    files: list[tuple[str, bytes]] = []
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name == "payload_json":
            body = json.loads(data)
        elif isinstance(name, str) and re.fullmatch(r"files\[\d+\]", name):
            files.append((str(part.get_filename()), data))
    return body, files


async def _json(request: web.Request) -> Any:
    """The request's JSON body (aiohttp caches the bytes, so reading twice is fine)."""
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _GatewaySession:
    """One client connection: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeat ACKs."""

    def __init__(
        self, fake: FakeDiscord, ws: web.WebSocketResponse, query: dict[str, str], port: int
    ) -> None:
        self.fake = fake
        self.port = port
        self.ws = ws
        self.query = query
        self.seq = 0
        self.ready = False
        self._send_lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(payload))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        await self.send({"op": 0, "t": event, "s": self.seq, "d": data})

    async def run(self) -> None:
        fake = self.fake
        await self.send({"op": 10, "d": {"heartbeat_interval": 41250}})
        async for frame in self.ws:
            if frame.type != WSMsgType.TEXT:
                continue
            msg = json.loads(frame.data)
            op = msg.get("op")
            if op == 1:
                await self.send({"op": 11})
            elif op == 2:
                d = msg.get("d") or {}
                fake.identifies.append(
                    {"query": self.query, **{k: v for k, v in d.items() if k != "token"}}
                )
                if d.get("token") != fake.valid_token:
                    await self.ws.close(code=4004, message=b"Authentication failed.")
                    return
                wants_content = bool(int(d.get("intents", 0)) & (1 << 15))
                if wants_content and not fake.message_content_intent:
                    await self.ws.close(code=4014, message=b"Disallowed intent(s).")
                    return
                await self.dispatch(
                    "READY",
                    {
                        "v": 10,
                        "user": fake.bot_user,
                        "guilds": [{"id": fake.guild_id, "unavailable": True}],
                        "session_id": "fake-session-1",
                        "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                        "application": {"id": fake.app_id, "flags": 1 << 19},
                        "private_channels": [],
                        "relationships": [],
                    },
                )
                # Ready before the guild is sent, with no await between: a push from now on
                # queues behind GUILD_CREATE on the (FIFO) send lock, as on the real gateway,
                # and a client serving once its guild arrives can be sent to at once.
                self.ready = True
                await self.dispatch("GUILD_CREATE", fake.guild_payload())
            elif op == 6:  # RESUME: no replay buffer here, so make the client start afresh
                await self.send({"op": 9, "d": False})


def main() -> None:
    """`python -m tests.fakes.fake_discord --port 8767`: serve the fake REST API and gateway."""
    import argparse

    parser = argparse.ArgumentParser(description="fake Discord REST API and gateway on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    fake = FakeDiscord(url=f"http://127.0.0.1:{args.port}/api/v10")
    web.run_app(fake.app(), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
