"""Slack's Events API over HTTP: what a request must be before bolt sees it, and the server that
acknowledges it.

Bolt assumes a request is signed, UTF-8 and a JSON object: it parses the body before checking
the signature and calls `int()` on the timestamp header, so junk from anyone on the internet
would end in a 500 and a traceback. `request_problem` answers such a request with a 400 or 401
instead.

`EventsServer` serves `POST /slack/events` on a thread and event loop of its own, so an
acknowledgement never waits behind the turns running on the bot's loop (200 streamed answers
keep that loop busy). A well-formed, signed event callback is acknowledged there at once and
then dispatched to bolt on the bot's loop; anything else (url_verification, slash commands,
interactions, an event bolt would refuse) is dispatched first and answered with bolt's response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

from adapters.slack.gate import event_problem

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
# Fields bolt reads while building its context: an event payload's shape, not its values.
_OBJECT_FIELDS = ("team", "user", "channel", "enterprise", "view", "container", "message")
SWITCH_INTERVAL_S = 0.001
SHUTDOWN_SECONDS = 2.0  # in-flight requests get this long when the server stops
# Acknowledged events go to bolt once requests stop arriving for QUIET_SECONDS, and at most
# HOLD_SECONDS after the first of them (a steady stream of requests never holds them longer).
QUIET_SECONDS = 0.005
HOLD_SECONDS = 0.05  # longer held, the turns start in larger waves: the first text comes later
_CLOSE_ROUNDS = 100
BACKLOG = 1024  # a burst of Slack's deliveries opens many connections at once


def request_problem(
    raw: bytes, headers: Mapping[str, str], verifier: SignatureVerifier | None
) -> tuple[int, str] | None:
    """Why Slack would not have sent this request, as (HTTP status, reason); None when it is fine.

    `verifier` is None in Socket Mode tests of the handler only; HTTP mode always checks the
    signature before the body is parsed.
    """
    return checked_body(raw, headers, verifier)[0]


def checked_body(
    raw: bytes, headers: Mapping[str, str], verifier: SignatureVerifier | None
) -> tuple[tuple[int, str] | None, dict[str, Any]]:
    """(`request_problem`'s answer, the parsed body: empty when there is a problem)."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    if verifier is not None and not _TIMESTAMP.fullmatch(timestamp):
        return (401, "missing or non-numeric X-Slack-Request-Timestamp"), {}
    try:
        # Slack sends UTF-8, and the verifier signs text: anything else is refused first.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return (400, "body is not UTF-8"), {}
    if verifier is not None and not verifier.is_valid(
        text, timestamp, headers.get("X-Slack-Signature", "")
    ):
        return (401, "bad or stale signature"), {}
    if not text.strip():
        return (400, "empty body"), {}
    content_type = headers.get("Content-Type", "").split(";")[0].strip() or None
    try:
        body: Any = parse_body(text, content_type)
    except (ValueError, RecursionError):
        return (400, "malformed JSON"), {}
    if not isinstance(body, dict):
        return (400, f"body is a JSON {type(body).__name__}, not an object"), {}
    problem = _shape_problem(body)
    return problem, {} if problem else body


def acknowledged_early(body: Mapping[str, Any]) -> bool:
    """True for a request bolt would answer with an empty 200 whatever its listeners do: an event
    callback of the right shape (bolt acknowledges events before its listeners run)."""
    return body.get("type") == "event_callback" and event_problem(body) is None


def _shape_problem(body: dict[str, Any]) -> tuple[int, str] | None:
    for name in _OBJECT_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, dict | str):
            return 400, f"field {name!r} is a {type(value).__name__}"
    event = body.get("event")
    if event is not None and not isinstance(event, dict):
        return 400, "field 'event' is not an object"
    authorizations = body.get("authorizations")
    if authorizations is not None and not (
        isinstance(authorizations, list) and all(isinstance(a, dict) for a in authorizations)
    ):
        return 400, "field 'authorizations' is not a list of objects"
    return None


class EventsServer:
    """`POST /slack/events` for a bolt app, served on a thread and event loop of its own.

    `start` binds the port; `stop` closes the listening socket and every connection, ends the
    thread's loop and joins the thread, then waits for the dispatches already acknowledged.
    """

    def __init__(
        self, app: AsyncApp, verifier: SignatureVerifier | None, host: str, port: int
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.host = host
        self.port = port
        self._bot_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._switch_interval: float | None = None
        # The bot loop's: bolt dispatches of acknowledged events still running.
        self._dispatches: set[asyncio.Task[BoltResponse | None]] = set()
        # The server thread's: acknowledged events not yet handed to the bot's loop.
        self._held: list[_Held] = []
        self._held_since = 0.0
        self._last_arrival = 0.0
        self._handover: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Listen on host:port (port 0: any free port, then `port` says which); raises OSError."""
        self._bot_loop = asyncio.get_running_loop()
        # While the bot's thread runs Python code, this thread waits up to the switch interval
        # (5 ms by default) each time it needs the interpreter back, a few times a request.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        started: Future[int] = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="slack-events", daemon=True
        )
        self._thread.start()
        try:
            self.port = await asyncio.wrap_future(started)
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            self._restore_switch_interval()
            raise

    async def stop(self) -> None:
        """Stop listening, answer or close every connection (in-flight requests get
        SHUTDOWN_SECONDS), join the thread, then wait for the acknowledged events' dispatches."""
        loop, thread, stopping = self._loop, self._thread, self._stopping
        if thread is not None:
            if loop is not None and stopping is not None:
                with contextlib.suppress(RuntimeError):  # its loop already ended
                    loop.call_soon_threadsafe(stopping.set)
            await asyncio.to_thread(thread.join)
        self._thread = self._loop = self._stopping = None
        self._restore_switch_interval()
        if self._dispatches:
            await asyncio.wait(set(self._dispatches), timeout=SHUTDOWN_SECONDS)

    def _restore_switch_interval(self) -> None:
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None

    # the server's thread ------------------------------------------------------------------

    def _serve(self, started: Future[int]) -> None:
        # asyncio.run ends what is left: cancels leftover tasks, then closes the loop.
        try:
            asyncio.run(self._main(started))
        except BaseException as exc:  # a failed bind: the caller re-raises it
            if not started.done():
                started.set_exception(exc)
            else:
                log.exception("slack: the events server stopped with an error")

    async def _main(self, started: Future[int]) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        web_app = web.Application()
        web_app.router.add_post(EVENTS_PATH, self._events)
        runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        assert runner.server is not None
        try:
            listener = await loop.create_server(
                runner.server, self.host, self.port, backlog=BACKLOG
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._loop = loop
        started.set_result(int(listener.sockets[0].getsockname()[1]))
        try:
            await self._stopping.wait()
        finally:
            # Stop accepting before closing: a connection the loop accepted just now becomes a
            # transport in a task of its own, which (CPython 3.11) fails to attach to a closed
            # server and leaves the socket open; given a few rounds first, it attaches, and
            # aiohttp's cleanup knows it once connection_made has run.
            for sock in listener.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
            listener.close()  # no new connections; those accepted already get their answer
            await runner.cleanup()
            await _close_transports(loop)
            self._hand_over()  # acknowledged: bolt must still see them

    async def _events(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("slack: refused a request to %s with 413: body over 1 MiB", EVENTS_PATH)
            raise
        problem, body = checked_body(raw, request.headers, self.verifier)
        if problem is not None:
            status, reason = problem
            log.warning("slack: refused a request to %s with %d: %s", EVENTS_PATH, status, reason)
            return web.Response(status=status, text=reason)
        # A copy: the request's own headers belong to this thread's server.
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        held = _Held(raw, request.query_string, headers)
        if acknowledged_early(body):
            self._hold(held)
            return web.Response(status=200)
        assert self._bot_loop is not None
        answered = asyncio.run_coroutine_threadsafe(self._dispatch(held), self._bot_loop)
        response = await asyncio.wrap_future(answered)
        if response is None:
            return web.Response(status=400, text="unreadable request")
        return await to_aiohttp_response(response)

    def _hold(self, held: _Held) -> None:
        """Keep an acknowledged event until requests stop arriving for QUIET_SECONDS (at most
        HOLD_SECONDS): a dispatch takes the interpreter from this thread, and a burst is
        acknowledged first."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._held:
            self._held_since = now
        self._held.append(held)
        self._last_arrival = now
        if self._handover is None:
            self._handover = loop.call_at(now + QUIET_SECONDS, self._maybe_hand_over)

    def _maybe_hand_over(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = min(self._last_arrival + QUIET_SECONDS, self._held_since + HOLD_SECONDS)
        if now < due:
            self._handover = loop.call_at(due, self._maybe_hand_over)
            return
        self._handover = None
        self._hand_over()

    def _hand_over(self) -> None:
        """Give the held events to the bot's loop in one call, in arrival order."""
        if self._handover is not None:
            self._handover.cancel()
            self._handover = None
        held, self._held = self._held, []
        if held and self._bot_loop is not None:
            with contextlib.suppress(RuntimeError):  # the bot's loop is closed: nobody to tell
                self._bot_loop.call_soon_threadsafe(self._dispatch_held, held)

    # the bot's loop ------------------------------------------------------------------------

    def _dispatch_held(self, held: list[_Held]) -> None:
        for one in held:  # in arrival order, as bolt would have seen them
            task = asyncio.ensure_future(self._dispatch(one))
            self._dispatches.add(task)
            task.add_done_callback(self._dispatches.discard)

    async def _dispatch(self, held: _Held) -> BoltResponse | None:
        """Bolt's answer to the request (None: bolt could not read it)."""
        bolt_request = AsyncBoltRequest(
            body=held.raw.decode("utf-8"),
            query=held.query,
            headers=held.headers,  # type: ignore[arg-type]
        )
        try:
            return await self.app.async_dispatch(bolt_request)
        except Exception as exc:
            # A signed body bolt cannot read (an odd shape): the sender's fault, one line.
            log.warning(
                "slack: refused a request to %s with 400: bolt could not read it (%s)",
                EVENTS_PATH,
                type(exc).__name__,
            )
            return None


async def _close_transports(loop: asyncio.AbstractEventLoop) -> None:
    """Close every connection of this loop and wait until each has closed its socket.

    aiohttp closes the connections it knows; one accepted as it stopped, or one that saw its
    client's EOF just then, may still be closing when the loop would end, and a socket left
    open that way is garbage-collected with a ResourceWarning. asyncio keeps no public list
    of a loop's transports: `_transports` is the selector loop's own registry.
    """
    registry: Mapping[int, asyncio.BaseTransport] = getattr(loop, "_transports", {})
    for _ in range(_CLOSE_ROUNDS):
        still_open = [t for t in list(registry.values()) if getattr(t, "_sock", None) is not None]
        if not still_open:
            return
        for transport in still_open:
            if not transport.is_closing():
                transport.close()
        await asyncio.sleep(0)  # a closed transport closes its socket in the next round
    log.warning("slack: %d connections still open as the events server stopped", len(still_open))


@dataclass(frozen=True)
class _Held:
    """A request as bolt reads it: the raw body, the query string and a copy of the headers."""

    raw: bytes
    query: str
    headers: dict[str, list[str]]
