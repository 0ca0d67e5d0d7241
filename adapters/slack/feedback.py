"""👍 / 👎 on a model's answer: the `context_actions` block and reading its clicks.

The buttons' values name the turn ("up:123" / "down:123"); a click arrives as a
`block_actions` payload, which is hostile input like any other: it is read by
`parse_feedback_click`, which accepts only our action, a well-formed value and a
Slack user id, and answers None for anything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FEEDBACK_ACTION_ID = "archbot_feedback"
_VALUE = re.compile(r"(up|down):([1-9][0-9]{0,17})")
_USER = re.compile(r"[UW][A-Z0-9]{2,20}")
_ID = re.compile(r"[A-Z0-9]{2,24}")


@dataclass(frozen=True, slots=True)
class FeedbackClick:
    """One person's 👍 or 👎 on one answer, read from a click."""

    turn_id: int
    user: str
    vote: str  # "up" or "down"
    team: str
    channel: str


def feedback_block(turn_id: int) -> dict[str, Any]:
    """The block with the 👍 / 👎 buttons for the answer of `turn_id`."""
    return {
        "type": "context_actions",
        "block_id": f"feedback-{turn_id}",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_ACTION_ID,
                "positive_button": {
                    "text": {"type": "plain_text", "text": "👍"},
                    "value": f"up:{turn_id}",
                    "accessibility_label": "This answer helped",
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": "👎"},
                    "value": f"down:{turn_id}",
                    "accessibility_label": "This answer did not help",
                },
            }
        ],
    }


def parse_feedback_click(body: Mapping[str, Any]) -> FeedbackClick | None:
    """The vote a `block_actions` payload carries; None when it is not a well-formed click of ours."""
    if body.get("type") != "block_actions":
        return None
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, Mapping) else None
    if not isinstance(user_id, str) or not _USER.fullmatch(user_id):
        return None
    team = body.get("team")
    team_id = team.get("id") if isinstance(team, Mapping) else None
    channel = body.get("channel")
    channel_id = channel.get("id") if isinstance(channel, Mapping) else None
    if not isinstance(team_id, str) or not _ID.fullmatch(team_id):
        return None
    if not isinstance(channel_id, str) or not _ID.fullmatch(channel_id):
        return None
    actions = body.get("actions")
    if not isinstance(actions, list):
        return None
    for action in actions[:5]:
        if not isinstance(action, Mapping) or action.get("action_id") != FEEDBACK_ACTION_ID:
            continue
        value = action.get("value")
        match = _VALUE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            return None
        return FeedbackClick(int(match.group(2)), user_id, match.group(1), team_id, channel_id)
    return None
