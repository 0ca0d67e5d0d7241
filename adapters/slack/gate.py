"""Which Slack requests reach the listeners: those addressed to the installed workspace (or
Enterprise Grid org) whose event has the shape the listeners read.

The same signing secret signs the app's requests for every workspace it is installed in,
and one token answers them all, so a signature alone does not make a request ours. The
installation is what auth.test says at start. Slack Connect channels keep working: the
envelope's `authorizations` name our installation even when the author's `user_team` is
another organisation's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)

# Event fields the listeners read as text; any other type means the body is not from Slack.
_TEXT_FIELDS = (
    "type",
    "subtype",
    "channel",
    "channel_type",
    "user",
    "user_team",
    "team",
    "ts",
    "thread_ts",
    "event_ts",
    "text",
    "bot_id",
    "client_msg_id",
)
_LIST_FIELDS = ("blocks", "attachments", "files")
_OBJECT_FIELDS = ("message", "previous_message", "bot_profile")
# What of a payload's ids and types may reach the log: short, and no line breaks.
_UNSAFE = re.compile(r"[^\w.-]")


@dataclass(frozen=True)
class Installation:
    """Where the app is installed: a workspace, or with `org_wide` a whole Grid org."""

    team_id: str
    enterprise_id: str = ""
    org_wide: bool = False

    @classmethod
    def from_auth_test(cls, auth: Mapping[str, Any]) -> Installation:
        """The installation auth.test describes for the bot token."""
        return cls(
            team_id=str(auth.get("team_id") or ""),
            enterprise_id=str(auth.get("enterprise_id") or ""),
            org_wide=auth.get("is_enterprise_install") is True,
        )

    def matches(self, team: object, enterprise: object) -> bool:
        """True for our workspace, or any workspace of our org when installed org-wide."""
        if self.team_id and isinstance(team, str) and team == self.team_id:
            return True
        return (
            self.org_wide
            and bool(self.enterprise_id)
            and isinstance(enterprise, str)
            and enterprise == self.enterprise_id
        )


def addressee(body: Mapping[str, Any]) -> tuple[str, str]:
    """(team, enterprise) a request is addressed to, for the log ("" where it names none)."""
    authorizations = body.get("authorizations")
    if isinstance(authorizations, list) and authorizations:
        first = authorizations[0] if isinstance(authorizations[0], Mapping) else {}
        return str(first.get("team_id") or ""), str(first.get("enterprise_id") or "")
    return str(_team_of(body) or ""), str(_enterprise_of(body) or "")


def is_addressed_to(body: Mapping[str, Any], installed: Installation) -> bool:
    """True when Slack sent this request for our installation.

    Events carry `authorizations` (the installation the event is delivered for: in a shared
    channel the envelope's `enterprise_id` is the author's org, not ours); slash commands and
    interactions carry the workspace (`team_id` / `team.id`) and `enterprise_id`.
    """
    authorizations = body.get("authorizations")
    if isinstance(authorizations, list) and authorizations:
        if any(
            isinstance(a, Mapping) and installed.matches(a.get("team_id"), a.get("enterprise_id"))
            for a in authorizations
        ):
            return True
        # Slack names one installation per event; in a Slack Connect channel it may be the
        # other org's, while the envelope's team is the workspace the event happened in.
        return body.get("is_ext_shared_channel") is True and installed.matches(
            body.get("team_id"), None
        )
    return installed.matches(_team_of(body), _enterprise_of(body))


def _team_of(body: Mapping[str, Any]) -> object:
    team = body.get("team_id")
    if team is None:
        team = body.get("team")
        if isinstance(team, Mapping):
            team = team.get("id")
    return team


def _enterprise_of(body: Mapping[str, Any]) -> object:
    enterprise = body.get("enterprise_id")
    if enterprise is None:
        enterprise = body.get("enterprise")
        if isinstance(enterprise, Mapping):
            enterprise = enterprise.get("id")
    return enterprise


def event_problem(body: Mapping[str, Any]) -> str | None:
    """Why an Events API body (or a click) cannot be from Slack (a field of the wrong type);
    None if fine."""
    if body.get("type") == "block_actions":
        # Bolt indexes each action's action_id while matching listeners.
        actions = body.get("actions")
        if not isinstance(actions, list) or not all(
            isinstance(a, Mapping) and isinstance(a.get("action_id"), str) for a in actions
        ):
            return "block_actions without a list of actions"
        return None
    if body.get("type") != "event_callback":
        return None
    event = body.get("event")
    if not isinstance(event, Mapping):
        return "the event is not an object"
    for kinds, names in ((str, _TEXT_FIELDS), (list, _LIST_FIELDS), (Mapping, _OBJECT_FIELDS)):
        for name in names:
            value = event.get(name)
            if value is not None and not isinstance(value, kinds):
                return f"event field {name!r} is a {type(value).__name__}"
    return None


class WorkspaceGate(AsyncMiddleware):
    """Bolt middleware: requests for other workspaces are acknowledged and dropped, with one
    log line each; event bodies of the wrong shape get a 400. Set `installation` at start."""

    def __init__(self) -> None:
        self.installation: Installation | None = None

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse:
        """Pass our installation's well-formed requests on to the listeners; answer the rest."""
        body = req.body
        problem = event_problem(body)
        if problem is not None:
            log.warning("slack: refused an event with 400: %s", problem)
            return BoltResponse(status=400, body="")
        installed = self.installation
        if installed is None or not is_addressed_to(body, installed):
            team, enterprise = addressee(body)
            log.warning(
                "slack: ignoring a %s for team %s%s (installed in %s)",
                _kind(body),
                _safe(team) or "(none)",
                f" / enterprise {_safe(enterprise)}" if enterprise else "",
                _describe(installed),
            )
            return BoltResponse(status=200, body="")
        return await next()


def _safe(value: object) -> str:
    return _UNSAFE.sub("?", str(value))[:40]


def _kind(body: Mapping[str, Any]) -> str:
    if body.get("command"):
        return "slash command"
    event = body.get("event")
    if isinstance(event, Mapping):
        return f"{_safe(event.get('type') or 'unknown')} event"
    return f"{_safe(body.get('type') or 'unknown')} request"


def _describe(installed: Installation | None) -> str:
    if installed is None:
        return "no workspace yet"
    if installed.org_wide:
        return f"enterprise {installed.enterprise_id}"
    return installed.team_id
