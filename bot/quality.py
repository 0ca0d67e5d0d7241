"""`!quality`: this week's answer feedback per channel, and what a helpful answer cost.

Votes are the platform buttons' clicks (`bot.feedback.record_vote`), one per
answer and person, the latest click counting. An answer is helpful when it has
more 👍 than 👎. The cost is the channel's whole model spend this week (the
usage ledger, unhelpful answers included) divided by its helpful answers, so
a channel that burns tokens on answers nobody liked shows it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot.commands import CommandContext, command
from bot.store import Store, week_start

log = logging.getLogger(__name__)

CHANNELS_MAX = 15  # rows of one report; the busiest channels first


@dataclass(frozen=True, slots=True)
class ChannelQuality:
    """One channel's feedback since a moment."""

    channel_key: str
    up: int
    down: int
    helpful_answers: int
    cost_usd: float

    @property
    def helpful_rate(self) -> float | None:
        """👍 over all votes, or None without votes."""
        votes = self.up + self.down
        return self.up / votes if votes else None

    @property
    def cost_per_helpful(self) -> float | None:
        """The channel's spend per helpful answer, or None without one."""
        return self.cost_usd / self.helpful_answers if self.helpful_answers else None


def channel_quality(
    store: Store, platform: str, workspace: str, since: datetime
) -> list[ChannelQuality]:
    """Feedback per channel of one workspace, for votes cast or changed since a moment."""
    rows = store.conn.execute(
        """
        WITH answer AS (
            SELECT th.channel_key AS channel_key, f.turn_id AS turn_id,
                   sum(f.vote = 'up') AS up, sum(f.vote = 'down') AS down
            FROM feedback f
            JOIN turns t ON t.id = f.turn_id
            JOIN threads th ON th.id = t.thread_id
            WHERE th.platform = ? AND th.workspace = ? AND f.updated_at >= ?
            GROUP BY f.turn_id
        )
        SELECT channel_key, sum(up), sum(down), sum(up > down),
               (SELECT coalesce(sum(u.cost_usd), 0) FROM usage u
                 WHERE u.channel_key = answer.channel_key AND u.created_at >= ?)
        FROM answer GROUP BY channel_key ORDER BY sum(up) + sum(down) DESC, channel_key
        """,
        (platform, workspace, since.isoformat(), since.isoformat()),
    ).fetchall()
    return [ChannelQuality(str(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows]


def _channel_name(channel_key: str) -> str:
    return channel_key.rsplit("/", 1)[-1] or channel_key


def quality_report(rows: list[ChannelQuality], here: str) -> str:
    """The Markdown table `!quality` shows."""
    head = "**Answer feedback this week** (since Monday 00:00 UTC)"
    if not rows:
        return (
            f"{head}\n\nNo 👍 / 👎 on answers yet this week. Every answer carries the two buttons;"
            " a click is counted here."
        )
    lines = [
        "| channel | 👍 | 👎 | helpful | cost per helpful answer |",
        "|---|---|---|---:|---:|",
    ]
    for row in rows[:CHANNELS_MAX]:
        rate = f"{row.helpful_rate:.0%}" if row.helpful_rate is not None else "-"
        cost = f"${row.cost_per_helpful:.4f}" if row.cost_per_helpful is not None else "-"
        name = _channel_name(row.channel_key) + (" (here)" if row.channel_key == here else "")
        lines.append(f"| {name} | 👍 {row.up} | 👎 {row.down} | {rate} | {cost} |")
    if len(rows) > CHANNELS_MAX:
        lines.append(f"| …and {len(rows) - CHANNELS_MAX} more channels | | | | |")
    return head + "\n\n" + "\n".join(lines)


@command(
    "quality",
    usage="!quality",
    summary="this week's 👍 / 👎 on answers per channel, and the cost per helpful answer",
    read_only=True,
)
async def quality_command(ctx: CommandContext, args: str) -> str:
    """Show this week's answer feedback for the workspace's channels."""
    rows = channel_quality(ctx.store, ctx.msg.platform, ctx.msg.workspace, week_start())
    return quality_report(rows, ctx.thread.channel_key)
