"""SlackAdapter: slack-bolt AsyncApp over Socket Mode or HTTP (`POST /slack/events`).

It wires the pure translation functions to bolt, shows the agent session (or the
thinking indicator), streams or posts each answer with its tool cards and feedback
buttons, stops a turn on Slack's stop button, and offers the assistant pane's
prompts. Over HTTP, `http.EventsServer` acknowledges a signed event on a thread of its own
and bolt dispatches it on the bot's loop; in Socket Mode bolt acknowledges events before the
listener runs (`process_before_response=False`). Either way slow model turns never delay the
ack. Exactly-once is the core's job: it records each message's key
(see `translate.message_key`) in SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.middleware.authorization.async_single_team_authorization import (
    AsyncSingleTeamAuthorization,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.assistant import AssistantPane
from adapters.slack.client import CALL_ERRORS, auth_status, configure_client, describe, secret
from adapters.slack.feedback import FEEDBACK_ACTION_ID, feedback_block, parse_feedback_click
from adapters.slack.files import permalink, upload_files
from adapters.slack.gate import Installation, WorkspaceGate
from adapters.slack.http import EVENTS_PATH, EventsServer
from adapters.slack.outbox import SlackOutbox
from adapters.slack.people import SlackPeople
from adapters.slack.render import fallback_text, render_parts
from adapters.slack.sessions import AgentSessions, session_title
from adapters.slack.stream import StreamedReply
from adapters.slack.thinking import ThinkingIndicator
from adapters.slack.translate import (
    PLATFORM,
    context_from_replies,
    is_error_reply,
    is_person_message,
    message_key,
    needs_prior_context,
    people_to_name,
    recipient_team,
    reply_thread_ts,
    session_stop,
    should_answer_message,
    slash_to_incoming,
    to_incoming,
)
from bot.app import Core
from bot.arrivals import ArrivalOrder, Place
from bot.commands import is_command
from bot.consultant import accept_correlation
from bot.decisions.records import set_link
from bot.errors import ArchbotError, CommandError
from bot.events import IncomingMessage, Reply
from bot.feedback import record_vote

log = logging.getLogger(__name__)

SLASH_COMMAND = "/archbot"
CONTEXT_LIMIT = 200  # earlier thread messages read when called into a discussion
STOP_SECONDS = 10.0
_SEEN_CAPACITY = 10_000
# A workspace that refused chat.startStream is asked again after this long (an admin may enable it).
STREAMING_RECHECK_SECONDS = 3600.0


class SlackAdapter:
    """Delivers Slack mentions, thread replies, DMs and `/archbot` to the core; posts its replies."""

    platform = PLATFORM

    def __init__(self, core: Core, *, host: str = "0.0.0.0") -> None:
        self.core = core
        self.settings = core.settings.slack
        secrets = core.secrets
        token = secret(secrets.slack_bot_token, "SLACK_BOT_TOKEN")
        self.mode = self.settings.mode
        self.host = host
        self.port = self.settings.port
        self._app_token = ""
        signing_secret = ""
        if self.mode == "http":
            signing_secret = secret(secrets.slack_signing_secret, "SLACK_SIGNING_SECRET")
        else:
            self._app_token = secret(secrets.slack_app_token, "SLACK_APP_TOKEN")
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        # Bolt builds its client from the token (given a client, it warns about SLACK_BOT_TOKEN in
        # the environment); bolt copies base_url and retry handlers into each request's client.
        self.app = AsyncApp(
            name="archbot",  # without it bolt walks inspect.stack() for a name: ~0.2 s of start-up
            token=token,
            signing_secret=signing_secret,
            request_verification_enabled=self.mode == "http",
            process_before_response=False,
            logger=logging.getLogger("slack_bolt.archbot"),
        )
        self.client = configure_client(self.app.client, self.settings.api_url)
        self.outbox = SlackOutbox(self.client)
        self.thinking = ThinkingIndicator(self.client)
        self.sessions = AgentSessions(self.client)
        self.pane = AssistantPane(self.client)
        # Only the installed workspace is served; the gate learns it from auth.test at start.
        self.gate = WorkspaceGate()
        self.app.use(self.gate)
        self.app.event("app_mention")(self._on_app_mention)
        self.app.event("message")(self._on_message)
        self.app.event("agent_session_stopped")(self._on_session_stopped)
        self.app.event("assistant_thread_started")(self._on_pane_opened)
        self.app.event("app_home_opened")(self._on_home_opened)
        self.app.action(FEEDBACK_ACTION_ID)(self._on_feedback)
        self.app.command(SLASH_COMMAND)(self._on_slash_command)
        # Last, so it only gets what no listener above took: bolt answers an event nobody
        # listens to with 404 over HTTP and no acknowledgement in Socket Mode (a redelivery).
        self.app.event(re.compile(".*"))(self._on_other_event)
        self.people = SlackPeople(self.client, core.store)
        self._arrivals = ArrivalOrder()
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self.team_id = ""
        self._server: EventsServer | None = None
        self._socket: Any = None
        self._stopped = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Messages taken in by this process: a redelivery skips the thinking indicator.
        # The core's SQLite record is what makes delivery exactly-once.
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Workspaces where chat.startStream was refused -> when to try streaming again.
        self._no_streaming: dict[str, float] = {}
        # Answers streaming now: Slack's stop button may have ended their messages already.
        self._streams: set[StreamedReply] = set()

    # lifecycle -------------------------------------------------------------------------

    async def check(self) -> str:
        """auth.test with the bot token; a one-line status."""
        return await auth_status(self.client, self.mode)

    async def start(self) -> None:
        """Learn who the bot is, then listen (HTTP server or Socket Mode connection)."""
        try:
            auth = await self.client.auth_test()
        except CALL_ERRORS as exc:
            raise ArchbotError(f"slack: auth.test failed: {describe(exc)}") from None
        self.bot_user_id = str(auth.get("user_id") or "") or None
        self.bot_id = str(auth.get("bot_id") or "") or None
        self.team_id = str(auth.get("team_id") or "")
        self.outbox.workspace = self.team_id
        self.gate.installation = Installation.from_auth_test(
            auth.data if isinstance(auth.data, dict) else {}
        )
        self._prime_authorization(auth)
        if self.mode == "http":
            await self._start_http()
        else:
            await self._start_socket()

    def _prime_authorization(self, auth: AsyncSlackResponse) -> None:
        """Hand our auth.test answer to bolt's authorization middleware.

        Otherwise bolt calls auth.test inside the first request's acknowledgement, once per
        concurrent request until one returns (a burst at start-up).
        """
        for middleware in getattr(self.app, "_async_middleware_list", []):
            if (
                isinstance(middleware, AsyncSingleTeamAuthorization)
                and middleware.auth_test_result is None
            ):
                middleware.auth_test_result = auth

    async def _start_http(self) -> None:
        self._server = EventsServer(self.app, self._verifier, self.host, self.port)
        try:
            await self._server.start()
        except OSError as exc:
            self._server = None
            raise ArchbotError(
                f"slack: cannot listen on port {self.port}: {exc.strerror}"
            ) from None
        self.port = self._server.port
        log.info(
            "slack: listening for Events API requests on http://%s:%d%s",
            self.host,
            self.port,
            EVENTS_PATH,
        )

    async def _start_socket(self) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        self._socket = AsyncSocketModeHandler(self.app, self._app_token, web_client=self.client)
        try:
            await self._socket.connect_async()
        except CALL_ERRORS as exc:
            await self._socket.close_async()
            self._socket = None
            raise ArchbotError(f"slack: Socket Mode connection failed: {describe(exc)}") from None
        log.info("slack: connected with Socket Mode as %s", self.bot_user_id)

    async def stop(self) -> None:
        """Stop taking events, then let in-flight replies finish posting (up to 10 s)."""
        if self._stopped:
            return
        self._stopped = True
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        try:
            await asyncio.wait_for(self._idle.wait(), STOP_SECONDS)
        except TimeoutError:
            log.warning("slack: %d replies still in flight at shutdown", self._active)

    # listeners (bolt injects arguments by name) -------------------------------------------------

    async def _on_app_mention(self, body: dict[str, Any]) -> None:
        accept_correlation(f"slack-{body.get('event_id', '')}")
        event = body.get("event") or {}
        if not is_person_message(event, self.bot_user_id) or message_key(event) in self._seen:
            return  # a bot, or a redelivery of a message already taken in (no second thread read)
        # Asked before accepting: accepting joins the thread, and then it counts as seen.
        read_context = needs_prior_context(body, self.core.consultant.knows_thread)
        await self._take_in(body, read_context)

    async def _on_message(self, body: dict[str, Any]) -> None:
        accept_correlation(f"slack-{body.get('event_id', '')}")
        if not should_answer_message(body, self.bot_user_id, self.core.consultant.knows_thread):
            return
        await self._take_in(body, read_context=False)

    async def _on_session_stopped(self, body: dict[str, Any]) -> None:
        """Slack's stop button: cancel the thread's running turn; it answers "Stopped." itself."""
        accept_correlation(f"slack-{body.get('event_id', '')}")
        stop = session_stop(body)
        if stop is None:
            log.info("slack: an agent_session_stopped event without a valid thread; ignored")
            return
        for streamed in list(self._streams):
            if streamed.msg.thread_key == stop.thread_key:
                streamed.stopped_by_slack(stop.streams)
        if not self.core.consultant.stop(stop.thread_key, stop.user):
            log.info("slack: stop pressed in %s with no turn running here", stop.thread_key)
            await self.sessions.settle(stop.workspace, stop.channel, stop.thread_ts)

    async def _on_pane_opened(self, body: dict[str, Any]) -> None:
        await self.pane.started(body)

    async def _on_home_opened(self, body: dict[str, Any]) -> None:
        await self.pane.dm_opened(body)

    async def _on_feedback(self, ack: Callable[..., Awaitable[Any]], body: dict[str, Any]) -> None:
        """A 👍 / 👎 click: acknowledged first, then checked and stored (a bad one is only logged)."""
        await ack()
        click = parse_feedback_click(body)
        if click is None:
            log.warning("slack: ignored a feedback click that is not well-formed")
            return
        prefix = f"{PLATFORM}/{click.team}/{click.channel}/"
        try:
            turn = self.core.store.get_turn(click.turn_id)
            key = self.core.store.get_thread_by_id(turn.thread_id).key
        except (TypeError, KeyError, IndexError):  # no such row
            log.warning("slack: ignored feedback on answer %d: no such answer", click.turn_id)
            return
        if not key.startswith(prefix):
            log.warning("slack: ignored feedback on answer %d from another channel", click.turn_id)
            return
        try:
            record_vote(self.core.store, click.turn_id, click.user, click.vote)
        except CommandError as exc:
            log.warning("slack: ignored feedback on answer %d: %s", click.turn_id, exc)
            return
        log.info("slack: %s voted %s on answer %d", click.user, click.vote, click.turn_id)

    async def _on_other_event(self, body: dict[str, Any]) -> None:
        log.debug("slack: acknowledged %s (not acted on)", (body.get("event") or {}).get("type"))

    async def _on_slash_command(
        self,
        ack: Callable[..., Awaitable[Any]],
        body: dict[str, Any],
        respond: Callable[..., Awaitable[Any]],
    ) -> None:
        await ack()
        msg = slash_to_incoming(body)
        accept_correlation(f"slack-{msg.event_id}")
        try:
            reply = await self.core.consultant.handle(msg)
        except Exception:
            log.exception("slack: %s failed in %s", SLASH_COMMAND, msg.thread_key)
            reply = Reply("Sorry, that command failed; the error is in the bot's log.", "", "error")
        if reply is None:
            reply = Reply(
                "You can't use archbot here (see the bot's [access] settings).", "", "error"
            )
        response_type = "ephemeral" if is_error_reply(reply) else "in_channel"
        try:
            for part in render_parts(reply.text):
                await respond(
                    text=fallback_text(part),
                    blocks=[{"type": "markdown", "text": part}],
                    response_type=response_type,
                )
            if reply.files and response_type == "in_channel":
                await upload_files(self.client, msg.channel, None, reply.files)
        except CALL_ERRORS as exc:
            log.error(
                "slack: answering %s in %s failed: %s",
                SLASH_COMMAND,
                msg.channel_key,
                describe(exc),
            )

    # the work ------------------------------------------------------------------------------------

    async def _take_in(self, body: dict[str, Any], read_context: bool) -> None:
        """Accept a message before any await, name its people, then answer it in arrival order."""
        event = body["event"]
        msg = to_incoming(body, self.bot_user_id)
        if msg is None or not (msg.has_content or msg.mentioned):
            return  # nothing to read (an empty share): no indicator, no model call
        if msg.event_id in self._seen:
            log.info(
                "slack: %s (event %s) already taken in; ignoring the redelivery",
                msg.event_id,
                body.get("event_id"),
            )
            return
        self._remember(msg.event_id)
        self.core.consultant.accept(msg)  # joined now: a follow-up a moment later is answered
        place = self._arrivals.arrive(msg.thread_key)
        self._active += 1
        self._idle.clear()
        try:
            earlier: list[dict[str, Any]] = []
            if read_context:
                earlier = await self._read_thread(str(event["channel"]), str(event["thread_ts"]))
            names = await self.people.names(
                msg.workspace, people_to_name(body, self.bot_user_id, earlier)
            )
            prior = context_from_replies(earlier, str(event["ts"]), self.bot_user_id, names)
            msg = to_incoming(body, self.bot_user_id, prior, names) or msg
            await place.turn()
            await self._answer(
                msg, str(event["ts"]), body.get("event_id"), recipient_team(body), place
            )
        except Exception:
            self._seen.pop(msg.event_id, None)
            log.exception("slack: taking in %s failed", msg.event_id)
        finally:
            place.leave()
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _read_thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Read a thread's messages once (`conversations.replies`); empty when not allowed."""
        try:
            response = await self.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=CONTEXT_LIMIT
            )
        except CALL_ERRORS as exc:
            log.warning(
                "slack: could not read earlier messages of %s/%s: %s",
                channel,
                thread_ts,
                describe(exc),
            )
            return []
        messages = response.get("messages") or []
        return [m for m in messages if isinstance(m, dict)]

    async def _answer(
        self, msg: IncomingMessage, message_ts: str, event_id: object, team: str, place: Place
    ) -> None:
        """Run one turn under its agent session (else a thinking indicator); stream the reply and
        its tool cards where possible, else post it."""
        thread_ts = reply_thread_ts(msg.channel, msg.thread)
        how, indicator_on, posted, session = "", False, False, False

        async def visible() -> None:
            # The first streamed chunk replaces the indicator, as a posted reply does.
            nonlocal indicator_on
            if indicator_on:
                indicator_on = False
                await self.thinking.stop(how, msg.channel, thread_ts, message_ts, posted=True)

        streamed: StreamedReply | None = None
        try:
            if thread_ts is not None and not is_command(msg.text):
                await self.pane.first_question(msg.channel, thread_ts, msg.text)
                session = await self.sessions.begin(
                    msg.workspace, msg.channel, thread_ts, session_title(msg.text)
                )
            if thread_ts is not None and self._can_stream(msg.workspace):
                where = (msg.channel, thread_ts)
                streamed = StreamedReply(
                    self.client,
                    self.outbox,
                    msg,
                    thread_ts,
                    team or msg.workspace,
                    on_visible=visible,
                    on_unsupported=self._streaming_unsupported,
                    closing_status=(lambda: self.sessions.closing_status(*where))
                    if session
                    else None,
                )
                self._streams.add(streamed)
            if not session:
                how = await self.thinking.start(msg.channel, thread_ts, message_ts, msg.is_dm)
                indicator_on = True
            reply = await self.core.consultant.handle(
                msg,
                on_text=streamed.feed if streamed is not None else None,
                on_queued=place.leave,  # stored: the thread's next message may go
                on_progress=streamed.progress if streamed is not None else None,
            )
            if reply is not None and reply.kind == "stopped":
                posted = await self._deliver_stopped(msg, reply, streamed)
            elif reply is not None:
                posted = await self._deliver(msg, reply, streamed)
        except Exception:
            # Not recorded as taken in: a retry of this event gets another chance.
            self._seen.pop(msg.event_id, None)
            log.exception("slack: handling %s in %s failed", event_id, msg.thread_key)
        finally:
            if streamed is not None:
                await streamed.close()
                self._streams.discard(streamed)
            if indicator_on:
                await self.thinking.stop(how, msg.channel, thread_ts, message_ts, posted)
            if session and thread_ts is not None:
                await self.sessions.end(
                    msg.workspace,
                    msg.channel,
                    thread_ts,
                    closed_by_stream=streamed is not None and streamed.session_closed,
                )

    async def _deliver_stopped(
        self, msg: IncomingMessage, reply: Reply, streamed: StreamedReply | None
    ) -> bool:
        """A stopped turn: its stream closes on what it showed, then "Stopped." (no buttons)."""
        if streamed is not None:
            await streamed.abandon()
        try:
            await self.outbox.post(msg.channel, msg.thread, reply.text)
        except CALL_ERRORS as exc:
            log.error("slack: posting 'Stopped.' to %s failed: %s", reply.thread_key, describe(exc))
            return False
        self.core.consultant.mark_delivered(reply)
        return True

    async def _deliver(
        self, msg: IncomingMessage, reply: Reply, streamed: StreamedReply | None = None
    ) -> bool:
        # Only a model's answer takes 👍 / 👎, under its last message.
        blocks = (
            [feedback_block(reply.turn_id)]
            if reply.takes_feedback and reply.turn_id is not None
            else None
        )
        try:
            if streamed is not None:
                await streamed.finish(reply, blocks)
            else:
                await self.outbox.post(msg.channel, msg.thread, reply.text, blocks)
        except Exception as exc:
            # Not marked delivered, so the stored answer is posted whole on recovery.
            log.error(
                "slack: posting the reply to %s failed (%s); the answer stays stored",
                reply.thread_key,
                describe(exc),
            )
            return False
        self.core.consultant.mark_delivered(reply)
        if reply.files:
            await self._attach(msg, reply, reply_thread_ts(msg.channel, msg.thread))
        # Text first, pictures as they finish: the answer is never held back by a diagram.
        diagrams = await self.core.attachments(reply)
        if diagrams:
            await upload_files(
                self.client, msg.channel, reply_thread_ts(msg.channel, msg.thread), diagrams
            )
        return True

    async def _attach(self, msg: IncomingMessage, reply: Reply, thread_ts: str | None) -> None:
        """Upload a reply's files after its text, and give its records the thread's link."""
        if thread_ts is not None:
            link = await permalink(self.client, msg.channel, thread_ts)
            if link is not None:
                set_link(self.core.store, msg.thread_key, link)
        failed = await upload_files(self.client, msg.channel, thread_ts, reply.files)
        if failed:
            names = ", ".join(f"`{n}`" for n in failed)
            note = f"(I could not attach {names}: see the bot's log; `files:write` may be missing.)"
            try:
                await self.outbox.post(msg.channel, msg.thread, note)
            except CALL_ERRORS as exc:
                log.error("slack: posting the upload note failed: %s", describe(exc))

    def _can_stream(self, workspace: str) -> bool:
        """False while a workspace that refused chat.startStream waits for its recheck."""
        until = self._no_streaming.get(workspace)
        if until is None:
            return True
        if time.monotonic() >= until:
            del self._no_streaming[workspace]
            return True
        return False

    def _streaming_unsupported(self, workspace: str) -> None:
        self._no_streaming[workspace] = time.monotonic() + STREAMING_RECHECK_SECONDS

    def _remember(self, key: str) -> None:
        self._seen[key] = None
        while len(self._seen) > _SEEN_CAPACITY:
            self._seen.popitem(last=False)


def create_adapter(core: Core) -> SlackAdapter:
    """Build the Slack adapter (`archbot run` calls this when [slack] enabled = true)."""
    return SlackAdapter(core)
