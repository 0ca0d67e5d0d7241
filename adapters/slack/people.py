"""SlackPeople: display names for user ids, from users.info (scope `users:read`), cached in SQLite."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import CALL_ERRORS, describe
from adapters.slack.translate import clean_name
from bot.people import cached_names, remember_names
from bot.store import Store

log = logging.getLogger(__name__)

NAME_TTL = timedelta(days=1)  # people rename themselves rarely; a day keeps users.info quiet
LOOKUP_SECONDS = 5.0  # a slow users.info must not hold up an answer for long
# Errors that mean "this app may not read users" rather than "not this user, not now".
_NOT_ALLOWED = frozenset({"missing_scope", "not_allowed_token_type", "no_permission"})
# Without users:read the bot names people by id, and asks again after this long.
SCOPE_RECHECK_SECONDS = 3600.0
# Someone users.info cannot name (another org's user, a deleted account) is asked again after this.
MISS_SECONDS = 600.0


def display_name(user: Mapping[str, Any]) -> str:
    """The name Slack shows for a users.info `user`: display name, else real name, else handle."""
    profile = user.get("profile") or {}
    for raw in (
        profile.get("display_name"),
        profile.get("real_name"),
        user.get("real_name"),
        user.get("name"),
    ):
        name = clean_name(str(raw or ""))
        if name:
            return name
    return ""


class SlackPeople:
    """Names user ids for the model; quietly falls back to the id when Slack will not say."""

    def __init__(self, client: AsyncWebClient, store: Store, ttl: timedelta = NAME_TTL) -> None:
        self.client = client
        self.store = store
        self.ttl = ttl
        self._off_until = 0.0  # users.info refused for lack of scope: ids until then
        self._inflight: dict[tuple[str, str], asyncio.Task[str]] = {}
        self._misses: dict[tuple[str, str], float] = {}  # (workspace, id) -> when to ask again

    async def names(self, workspace: str, user_ids: Sequence[str]) -> dict[str, str]:
        """Display names of `user_ids` that are known or can be learned (others are left out)."""
        fresh_since = (datetime.now(UTC) - self.ttl).isoformat(timespec="microseconds")
        known = cached_names(self.store, workspace, user_ids, fresh_since)
        now = time.monotonic()
        missing = [
            uid
            for uid in dict.fromkeys(user_ids)
            if uid not in known and self._misses.get((workspace, uid), 0.0) <= now
        ]
        if not missing or now < self._off_until:
            return known
        tasks = {uid: self._lookup(workspace, uid) for uid in missing}
        # asyncio.wait leaves late look-ups running: they are shared, and store what they learn.
        _, late = await asyncio.wait(tasks.values(), timeout=LOOKUP_SECONDS)
        if late:
            log.warning("slack: users.info took over %.0f s; naming people by id", LOOKUP_SECONDS)
        fetched = {
            uid: task.result() for uid, task in tasks.items() if task.done() and task.result()
        }
        # A name past its TTL still beats an id when Slack could not be asked this time.
        stale = cached_names(self.store, workspace, [u for u in missing if u not in fetched], "")
        return {**stale, **known, **fetched}

    def _lookup(self, workspace: str, user_id: str) -> asyncio.Task[str]:
        # One users.info per person however many messages ask at once.
        key = (workspace, user_id)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(workspace, user_id))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return task

    async def _fetch(self, workspace: str, user_id: str) -> str:
        try:
            response = await self.client.users_info(user=user_id)
        except SlackApiError as exc:
            if exc.response.get("error") in _NOT_ALLOWED:
                if time.monotonic() >= self._off_until:
                    log.warning(
                        "slack: users.info refused (%s); people are named by id "
                        "(add the users:read scope)",
                        describe(exc),
                    )
                self._off_until = time.monotonic() + SCOPE_RECHECK_SECONDS
            else:
                log.info("slack: no name for %s: %s", user_id, describe(exc))
                self._missed(workspace, user_id)
            return ""
        except CALL_ERRORS as exc:
            log.info("slack: no name for %s: %s", user_id, describe(exc))
            self._missed(workspace, user_id)
            return ""
        user = response.get("user")
        name = display_name(user) if isinstance(user, Mapping) else ""
        if name:
            remember_names(self.store, workspace, {user_id: name})
        else:
            self._missed(workspace, user_id)
        return name

    def _missed(self, workspace: str, user_id: str) -> None:
        self._misses[(workspace, user_id)] = time.monotonic() + MISS_SECONDS
        if len(self._misses) > 10_000:  # bounded: forget the expired ones
            now = time.monotonic()
            self._misses = {k: t for k, t in self._misses.items() if t > now}
