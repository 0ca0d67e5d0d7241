"""Correlation ids from the moment an adapter accepts an event: the adapter's lines and the
turn's lines of one Slack event carry one id, and a hostile event id is neutralised."""

from __future__ import annotations

import re
from pathlib import Path

from bot.consultant import accept_correlation, correlation_id
from tests.fakes.fake_slack import event_body
from tests.slack_run import SlackRun, serving_model, serving_slack
from tests.test_slack_acceptance import replies


def test_a_hostile_event_id_is_neutralised_and_capped() -> None:
    token = correlation_id.set("-")
    try:
        accept_correlation("slack-Ev1 [x]\n\x1b[31mforged line" + "z" * 200)
        value = correlation_id.get()
    finally:
        correlation_id.reset(token)
    assert value.startswith("slack-Ev1x31mforgedline")
    assert len(value) == 64 and re.fullmatch(r"[A-Za-z0-9._:-]+", value)


def test_adapter_and_turn_lines_of_one_event_share_its_id(tmp_path: Path) -> None:
    with serving_model() as model, serving_slack() as slack:
        bot = SlackRun(tmp_path, slack, model, ARCHBOT_LOG__LEVEL="debug")
        try:
            model.reply_text("Use a feature store.")
            body = event_body("app_mention", channel="C0LOGS", text="<@U0BOT0001> features?")
            assert bot.send(body)[0] == 200
            replies(slack, "C0LOGS", str(body["event"]["ts"]))
        finally:
            bot.stop_cleanly()
        lines = bot.log_path.read_text().splitlines()
    tag = f"slack-{body['event_id']}"
    adapter = [line for line in lines if f"[{tag}]" in line and " adapters." in line]
    turn = [line for line in lines if f"[{tag}/turn-" in line]
    assert adapter and turn, "\n".join(lines)
