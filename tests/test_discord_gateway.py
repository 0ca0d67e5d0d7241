"""Gateway events discord.py cannot parse are logged and skipped (SPEC section 8)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.connect import parse_error_line, skip_unparsable
from tests.fakes.fake_discord import FakeDiscord, now_iso, user_payload

TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXQ"


def interaction_without_member_flags() -> dict[str, Any]:
    """An application command invocation whose `member` has no `flags`."""
    fake = FakeDiscord()
    return {
        "id": "1100000000000000500",
        "application_id": fake.app_id,
        "type": 2,
        "token": TOKEN,
        "version": 1,
        "guild_id": fake.guild_id,
        "channel_id": fake.channel_id,
        "channel": fake.channels[fake.channel_id],
        "member": {
            "user": user_payload("1100000000000000050", "alice"),
            "roles": [],
            "joined_at": now_iso(),
            "deaf": False,
            "mute": False,
            "permissions": "1071698660929",
        },
        "app_permissions": "1071698660929",
        "attachment_size_limit": 10 * 1024 * 1024,
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": fake.guild_id},
        "context": 0,
        "data": {"id": "1100000000000000077", "name": "archbot", "type": 1, "options": []},
    }


def logged_in_client() -> discord.Client:
    """A client whose state knows itself, as after READY (no connection needed)."""
    client = discord.Client(intents=discord.Intents.default())
    client._connection.user = discord.ClientUser(
        state=client._connection,
        data=FakeDiscord().bot_user,  # type: ignore[arg-type]
    )
    return client


def test_discord_py_itself_raises_on_it() -> None:
    """Why the guard exists: the parser raises inside discord.py's websocket read loop."""
    client = logged_in_client()
    with pytest.raises(KeyError, match="flags"):
        client._connection.parsers["INTERACTION_CREATE"](interaction_without_member_flags())


def test_a_guarded_parser_logs_one_line_and_skips(caplog: pytest.LogCaptureFixture) -> None:
    client = logged_in_client()
    parsers = client._connection.parsers
    skip_unparsable(parsers)
    with caplog.at_level(logging.WARNING, logger="adapters.discord.connect"):
        parsers["INTERACTION_CREATE"](interaction_without_member_flags())
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    line = record.getMessage()
    assert "INTERACTION_CREATE" in line and "KeyError" in line and "flags" in line
    assert "\n" not in line and TOKEN not in line and record.exc_info is None


def test_ready_is_left_alone() -> None:
    parse = object()
    parsers: dict[str, Any] = {"READY": parse, "MESSAGE_CREATE": lambda data: None}
    skip_unparsable(parsers)
    assert parsers["READY"] is parse, "without READY there is no session to keep"
    assert parsers["MESSAGE_CREATE"].__name__ == "parse_or_skip"


def test_the_line_never_quotes_the_token_or_spans_lines() -> None:
    error = ValueError(f"bad value {TOKEN}\nsecond line " + "x" * 500)
    line = parse_error_line("INTERACTION_CREATE", error, {"token": TOKEN})
    assert TOKEN not in line and "[token]" in line and "\n" not in line
    assert len(line) < 300
