"""Pure translation of Discord payloads into the core's IncomingMessage, on recorded payloads."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.connect import INTENT_HELP, describe_connect_error
from adapters.discord.translate import (
    Where,
    command_text,
    incoming_from_payload,
    is_from_bot,
    mentions_bot,
    payload_of,
    strip_bot_mention,
    thread_name,
    where_of,
)
from tests.fakes.fake_discord import FakeDiscord

DATA = Path(__file__).parent / "data" / "discord"
BOT_ID = "1300000000000000001"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())


def test_mention_in_a_channel_keys_the_thread_it_will_open() -> None:
    payload = load("message_mention_in_channel")
    assert mentions_bot(payload, BOT_ID) and not is_from_bot(payload)
    msg = incoming_from_payload(
        payload, bot_id=BOT_ID, where=Where("channel", payload["channel_id"])
    )
    assert msg.platform == "discord"
    assert msg.workspace == "1300000000000000010"
    assert msg.channel == "1300000000000000011"
    assert msg.thread == payload["id"], "the thread opened on a message has the message's id"
    assert msg.thread_key == f"discord/1300000000000000010/1300000000000000011/{payload['id']}"
    assert (
        msg.text == "How should we store 5 years of tick data for backtests?\nWe have ~2 TB/year."
    )
    assert msg.user == "1300000000000000050" and msg.user_name == "Alice"
    assert msg.event_id == payload["id"] and not msg.is_dm


def test_message_in_a_thread_uses_the_thread_id_and_its_parent() -> None:
    payload = load("message_in_thread_nick_mention")
    where = Where("thread", payload["channel_id"], "1300000000000000011")
    msg = incoming_from_payload(payload, bot_id=BOT_ID, where=where)
    assert msg.channel == "1300000000000000011"
    assert msg.thread == "1308820000000000777"
    assert msg.text == "what would you change in <@1300000000000000051>'s serving setup?"
    assert msg.user_name == "Carol (ML)", "the server nickname is the name people see"


def test_dm_is_keyed_by_its_channel() -> None:
    payload = load("message_dm")
    assert not mentions_bot(payload, BOT_ID)
    msg = incoming_from_payload(payload, bot_id=BOT_ID, where=Where("dm", payload["channel_id"]))
    assert msg.workspace == "dm" and msg.is_dm
    assert msg.channel == msg.thread == "1308500000000000999"
    assert msg.text == "Is Kafka overkill for 200 msgs/s?"


@pytest.mark.parametrize("name", ["message_from_other_bot", "message_webhook"])
def test_bots_and_webhooks_are_recognised(name: str) -> None:
    assert is_from_bot(load(name))


def test_mention_forms_are_stripped_and_others_kept() -> None:
    assert strip_bot_mention(f"<@{BOT_ID}> hi", BOT_ID) == "hi"
    assert strip_bot_mention(f"<@!{BOT_ID}>hi <@!{BOT_ID}>", BOT_ID) == "hi"
    assert strip_bot_mention(f"ask <@{BOT_ID}>  about <@42>", BOT_ID) == "ask about <@42>"
    assert strip_bot_mention(f"<@{BOT_ID}1> not me", BOT_ID) == f"<@{BOT_ID}1> not me"
    code = f"<@{BOT_ID}> why is this slow?\n```python\nfor row in rows:\n    total  += row\n```"
    assert strip_bot_mention(code, BOT_ID) == code.split("> ", 1)[1], "indentation is kept"


def test_the_bots_own_role_counts_as_a_mention() -> None:
    payload = {"content": "<@&777> is Polars enough?", "mentions": [], "mention_roles": ["777"]}
    assert mentions_bot(payload, BOT_ID, role_id="777")
    assert not mentions_bot(payload, BOT_ID, role_id="778")
    msg = incoming_from_payload(
        dict(payload, id="5", author={"id": "9"}),
        bot_id=BOT_ID,
        where=Where("dm", "1"),
        role_id="777",
    )
    assert msg.text == "is Polars enough?"


def test_everyone_is_not_a_mention_of_the_bot() -> None:
    payload = {"content": "@everyone standup", "mentions": [], "mention_everyone": True}
    assert not mentions_bot(payload, BOT_ID)
    assert mentions_bot({"content": f"hey <@!{BOT_ID}>", "mentions": []}, BOT_ID)


def test_thread_name_is_the_question_trimmed_to_100() -> None:
    assert thread_name("How do we backfill?\nMore detail") == "How do we backfill?"
    long = "word " * 60
    name = thread_name(long)
    assert len(name) <= 100 and name.startswith("word word")
    assert thread_name("   \n ") == "Architecture discussion"
    assert thread_name("x" * 100) == "x" * 100


def test_slash_options_become_core_commands() -> None:
    assert command_text("todo", "add", "Pick a TSDB ") == "!todo add Pick a TSDB"
    assert command_text("todo", "done", 3) == "!todo done 3"
    assert command_text("repo", None) == "!repo"
    assert command_text("checkin", "weekly") == "!checkin weekly"


def test_intent_error_names_the_portal_switch() -> None:
    line = describe_connect_error(discord.PrivilegedIntentsRequired(None))
    assert line == INTENT_HELP
    assert "Message Content Intent" in line and "Developer Portal" in line and "\n" not in line


async def test_discord_py_messages_translate_like_their_payloads() -> None:
    """The Message objects discord.py builds from these payloads give the same events."""
    client = discord.Client(intents=discord.Intents.default())
    state = client._connection
    guild = FakeDiscord(
        guild_id="1300000000000000010", channel_id="1300000000000000011"
    ).guild_payload()
    state._add_guild_from_data(guild)  # type: ignore[arg-type]
    for name, kind in [("message_mention_in_channel", "channel"), ("message_dm", "dm")]:
        payload = load(name)
        channel, _ = state._get_guild_channel(payload)  # type: ignore[arg-type]
        message = discord.Message(state=state, channel=channel, data=payload)  # type: ignore[arg-type]
        where = where_of(message.channel)
        assert where is not None and where.kind == kind
        from_message = incoming_from_payload(payload_of(message), bot_id=BOT_ID, where=where)
        assert from_message == incoming_from_payload(payload, bot_id=BOT_ID, where=where)
