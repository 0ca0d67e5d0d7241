"""`!adr` in Discord: the record is posted and attached as a Markdown file (discord.File)."""

from __future__ import annotations

from typing import Any

from tests.conftest import eventually
from tests.test_decisions import STORAGE_DECISION
from tests.test_discord_adapter import Running, bot, bot_posts, fake_discord, quick_ready

__all__ = ["bot", "fake_discord", "quick_ready"]  # fixtures used here


async def test_adr_is_posted_with_the_record_attached(bot: Running) -> None:
    fake, model = bot.discord, bot.model
    model.reply_text("Parquet on S3, partitioned by day: agreed.")
    sent = fake.message(f"<@{fake.bot_id}> where do we keep 2 TB of ticks?", mention_bot=True)
    thread_id = sent["id"]
    await eventually(lambda: bot_posts(fake, thread_id), "the answer")
    model.reply_tool_use("record_decision", STORAGE_DECISION)
    fake.message(f"<@{fake.bot_id}> !adr", channel_id=thread_id, mention_bot=True)

    def attached() -> list[tuple[str, str, bytes]]:
        return fake.files

    [(channel, name, content)] = await eventually(attached, "the attachment")
    assert channel == thread_id
    assert name == "0001-store-ticks-as-parquet-on-s3-partitioned-by-day.md"
    text = content.decode()
    assert text.startswith("# 1. Store ticks as Parquet on S3") and "## Follow-ups" in text
    messages: list[dict[str, Any]] = fake.messages[thread_id]
    assert messages[-1]["attachments"][0]["filename"] == name
    assert "Discussion: https://discord.com/channels/" in text


async def test_the_adr_slash_command_attaches_the_record(bot: Running) -> None:
    fake, model = bot.discord, bot.model
    model.reply_text("Parquet on S3, partitioned by day: agreed.")
    sent = fake.message(f"<@{fake.bot_id}> where do we keep 2 TB of ticks?", mention_bot=True)
    thread_id = sent["id"]
    await eventually(lambda: bot_posts(fake, thread_id), "the answer")
    model.reply_tool_use("record_decision", STORAGE_DECISION)
    fake.interaction([{"name": "adr", "type": 1, "options": []}], channel_id=thread_id)

    def attached() -> list[tuple[str, str, bytes]]:
        return [f for f in fake.files if f[0] == "interaction"]

    [(_, name, content)] = await eventually(attached, "the attachment on the interaction answer")
    assert name == "0001-store-ticks-as-parquet-on-s3-partitioned-by-day.md"
    assert content.decode().startswith("# 1. Store ticks as Parquet on S3")
