"""Acceptance, as a new user tries it in Discord through `archbot run` (a real process): the
answer's 👍 / 👎 still work after a restart, and the Stop button cancels a slow turn."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bot.signoff import SIGN_OFF
from tests.conftest import wait_until
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_discord import FakeDiscord
from tests.test_discord_run import archbot_run

STOP_ID = "archbot:stop"  # what a user clicks; spelled out, as Discord sends it back


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in message.get("components") or [] for b in row["components"]]


def test_the_answers_buttons_still_work_after_a_restart(
    tmp_path: Path, fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic
) -> None:
    fake, model = fake_discord, fake_anthropic
    with archbot_run(tmp_path, fake, model) as run:
        model.reply_text("Keep one feature definition, served online and offline.")
        thread = fake.message(f"<@{fake.bot_id}> How do we share features?", mention_bot=True)
        wait_until(lambda: fake.sent_messages(thread["id"]), "the answer", proc=run.proc)
    [answer] = fake.messages[thread["id"]]
    assert answer["content"].endswith(SIGN_OFF)
    up, down = buttons(answer)
    assert (up["emoji"]["name"], down["emoji"]["name"]) == ("👍", "👎")

    with archbot_run(tmp_path, fake, model) as run:  # a new process: nothing of the old in memory
        click = fake.click(answer["id"], up["custom_id"])
        wait_until(
            lambda: fake.answer_to(click).callback_type is not None, "the click", proc=run.proc
        )
        noted = fake.answer_to(click)
        assert (noted.callback_type, noted.ephemeral, noted.content) == (
            4,
            True,
            "Thanks: noted 👍",
        )
        fake.message("!quality", channel_id=thread["id"])
        wait_until(lambda: len(fake.sent_messages(thread["id"])) == 2, "!quality", proc=run.proc)
    report = fake.sent_messages(thread["id"])[1]["content"]
    [row] = [line for line in report.splitlines() if "(here)" in line]
    assert "👍 1" in row and "👎 0" in row and "100%" in row


def test_the_stop_button_cancels_a_slow_turn(
    tmp_path: Path, fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic
) -> None:
    fake, model = fake_discord, fake_anthropic
    with archbot_run(tmp_path, fake, model) as run:
        model.latency = 6.0  # unscripted: the slow call would echo the question
        thread = fake.message(f"<@{fake.bot_id}> Review our backfill", mention_bot=True)["id"]

        def working() -> list[dict[str, Any]]:
            return [
                m
                for m in list(fake.messages.get(thread, []))
                if any(b.get("custom_id") == STOP_ID for b in buttons(m))
            ]

        [message] = wait_until(working, "the working message with its Stop button", proc=run.proc)
        [stop] = buttons(message)
        assert stop["label"] == "Stop"
        click = fake.click(message["id"], STOP_ID)
        clicked = time.monotonic()

        def stopped() -> list[str]:
            return [m["content"] for m in fake.sent_messages(thread) if "Stopped." in m["content"]]

        wait_until(stopped, "Stopped.", within=3, proc=run.proc)
        assert time.monotonic() - clicked < 2.0
        assert fake.answer_to(click).callback_type is not None
        model.latency = 0.0
        model.reply_text("Backfill by month, idempotently.")
        fake.message("Start again: how would you backfill?", channel_id=thread)
        wait_until(
            lambda: any("Backfill by month" in m["content"] for m in fake.sent_messages(thread)),
            "the next answer",
            proc=run.proc,
        )
        posts = [m["content"] for m in fake.sent_messages(thread)]
        assert [p.splitlines()[0] for p in posts] == [
            "Stopped.",
            "Backfill by month, idempotently.",
        ]
        assert not any("Review our backfill" in p for p in posts)
        assert not working(), "no Stop button is left behind"
