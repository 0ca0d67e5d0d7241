"""The Slack assistant pane: starter prompts when it opens, a thread title from the first question.

`assistant_thread_started` gets up to four suggested prompts
(assistant.threads.setSuggestedPrompts); the first question asked in that thread
names it (assistant.threads.setTitle, from the text itself: no model call).
`assistant_thread_context_changed` needs nothing but its acknowledgement. An app
declared an agent (`agent_view`) gets no `assistant_thread_started`: Slack sends
`app_home_opened` (tab "messages") when someone opens its DM, and the prompts are
set for that DM without a thread (a thread_ts would make the call fail silently).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import CALL_ERRORS, describe
from bot.progress import shown_value

log = logging.getLogger(__name__)

PROMPTS_TITLE = "Ask the architect"
# Slack shows at most four; each is something the architect is for, written so it works as sent.
SUGGESTED_PROMPTS: tuple[dict[str, str], ...] = (
    {
        "title": "Set a latency budget",
        "message": (
            "Help me set a latency budget for our real-time scoring path: p99 of 50 ms end to end, "
            "from the request arriving to the decision going out. Split it across feature lookup, "
            "model inference, serialization and network, say what to measure at each hop, and "
            "which parts usually blow the budget first."
        ),
    },
    {
        "title": "Speed up a slow pipeline",
        "message": (
            "Our daily feature pipeline takes 4 hours on a single machine and has to finish in "
            "under 1 hour. Walk me through how to find where the time goes, then the options "
            "(incremental processing, partitioning, a different engine, caching) with their "
            "trade-offs and what each one costs to run."
        ),
    },
    {
        "title": "Share features between teams",
        "message": (
            "Two teams compute the same features separately for training and for online "
            "serving, and the values drift apart. How should we share features between "
            "training and serving, and should we adopt a feature store (Feast, Redis, our own) "
            "or something lighter?"
        ),
    },
    {
        "title": "Review production readiness",
        "message": (
            "Review our model's production readiness before launch: what should we check for "
            "monitoring, data and prediction drift, rollback, retraining, load and failure "
            "modes? Give me a checklist ordered by risk, and the questions we should be able to "
            "answer before going live."
        ),
    },
)
THREAD_TITLE_MAX_CHARS = 100
_REMEMBERED = 1000  # pane threads waiting for their first question
_CHANNEL = re.compile(r"[CDG][A-Z0-9]{2,30}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")


def pane_thread(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(channel, thread_ts) of an `assistant_thread_started` event; None when malformed."""
    event = body.get("event")
    thread = event.get("assistant_thread") if isinstance(event, Mapping) else None
    if not isinstance(thread, Mapping):
        return None
    channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
    if not (isinstance(channel, str) and _CHANNEL.fullmatch(channel)):
        return None
    if not (isinstance(thread_ts, str) and _TS.fullmatch(thread_ts)):
        return None
    return channel, thread_ts


def opened_dm(body: Mapping[str, Any]) -> str | None:
    """The DM channel of an `app_home_opened` event on the Messages tab; None otherwise."""
    event = body.get("event")
    if not isinstance(event, Mapping) or event.get("tab") != "messages":
        return None
    channel = event.get("channel")
    if isinstance(channel, str) and _CHANNEL.fullmatch(channel) and channel.startswith("D"):
        return channel
    return None


def thread_title(text: str) -> str:
    """A pane thread's title from its first question: one line, no markup, capped."""
    return shown_value(text, THREAD_TITLE_MAX_CHARS)


class AssistantPane:
    """Offers the starter prompts in a newly opened pane, and titles it from the first question."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._untitled: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._offered: OrderedDict[str, None] = OrderedDict()  # agent DMs given their prompts

    async def started(self, body: Mapping[str, Any]) -> None:
        """`assistant_thread_started`: set the suggested prompts; the thread awaits its title."""
        where = pane_thread(body)
        if where is None:
            log.info("slack: an assistant_thread_started event without a valid thread; ignored")
            return
        channel, thread_ts = where
        self._untitled[where] = None
        while len(self._untitled) > _REMEMBERED:
            self._untitled.popitem(last=False)
        await self._offer(channel, thread_ts)

    async def dm_opened(self, body: Mapping[str, Any]) -> None:
        """`app_home_opened` on the Messages tab (an agent app): the DM's prompts, once per run."""
        channel = opened_dm(body)
        if channel is None or channel in self._offered:
            return
        self._offered[channel] = None
        while len(self._offered) > _REMEMBERED:
            self._offered.popitem(last=False)
        await self._offer(channel, None)

    async def _offer(self, channel: str, thread_ts: str | None) -> None:
        try:
            await self.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel,
                thread_ts=thread_ts,
                title=PROMPTS_TITLE,
                prompts=[dict(p) for p in SUGGESTED_PROMPTS],
            )
        except CALL_ERRORS as exc:
            log.warning(
                "slack: could not set the suggested prompts in %s: %s", channel, describe(exc)
            )

    async def first_question(self, channel: str, thread_ts: str | None, text: str) -> None:
        """Title a pane thread from its first question (once; other threads are left alone)."""
        if thread_ts is None or (channel, thread_ts) not in self._untitled:
            return
        del self._untitled[(channel, thread_ts)]
        title = thread_title(text)
        if not title:
            return
        try:
            await self.client.assistant_threads_setTitle(
                channel_id=channel, thread_ts=thread_ts, title=title
            )
        except CALL_ERRORS as exc:
            log.warning(
                "slack: could not title the assistant thread in %s: %s", channel, describe(exc)
            )
