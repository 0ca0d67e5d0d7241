"""Issue 11, Slack side, pure parts on JSON: task cards, feedback blocks and clicks, the stop
event, session and pane titles, the suggested prompts; each checked against the fake's copy of
Slack's rules (and slack_sdk's own block models where it has them)."""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks import Block, ContextActionsBlock

from adapters.slack.assistant import SUGGESTED_PROMPTS, opened_dm, pane_thread, thread_title
from adapters.slack.feedback import FEEDBACK_ACTION_ID, feedback_block, parse_feedback_click
from adapters.slack.sessions import SESSION_TITLE_MAX_CHARS, response_warnings, session_title
from adapters.slack.tasks import stream_content, task_chunk
from adapters.slack.translate import session_stop
from bot.progress import Source, ToolProgress, describe_call
from tests.conftest import REPO_ROOT
from tests.fakes.fake_slack import block_problem, chunk_problem, event_body, feedback_click


def reading(status: str = "in_progress") -> ToolProgress:
    item = describe_call(
        "toolu_01", "read_file", {"path": "pipelines/resample.py"}, default_repo="acme/trading"
    )
    return item if status == "in_progress" else item.finished(status == "complete")


# task cards ---------------------------------------------------------------------------------


def test_a_tool_call_is_a_task_update_card_with_its_github_link() -> None:
    chunk = task_chunk(reading())
    assert chunk == {
        "type": "task_update",
        "id": "toolu_01",
        "title": "Reading `pipelines/resample.py` in acme/trading",
        "status": "in_progress",
        "sources": [
            {
                "type": "url",
                "url": "https://github.com/acme/trading/blob/HEAD/pipelines/resample.py",
                "text": "pipelines/resample.py",
            }
        ],
    }
    assert chunk_problem([chunk]) is None
    assert task_chunk(reading("complete"))["status"] == "complete"
    assert task_chunk(reading("error"))["status"] == "error"


def test_a_card_never_carries_a_ping_a_foreign_link_or_an_unknown_status() -> None:
    item = ToolProgress(
        "t" * 300,
        "search_code",
        "Searching acme/trading for <!channel> @here",
        "exploded",
        (Source("javascript:alert(1)", "evil"), Source("https://github.com/a/b", "ok")),
    )
    chunk = task_chunk(item)
    assert "<!channel>" not in chunk["title"] and "@here" not in chunk["title"]
    assert chunk["status"] == "error"
    assert [s["url"] for s in chunk["sources"]] == ["https://github.com/a/b"]
    assert len(chunk["id"]) <= 100
    assert chunk_problem([chunk]) is None


def test_a_streaming_call_carries_text_alone_or_text_then_cards() -> None:
    assert stream_content("Hello", []) == {"markdown_text": "Hello"}
    assert stream_content("", []) == {"markdown_text": None}  # dropped by slack_sdk
    card = task_chunk(reading())
    content = stream_content("Let me read it.", [card])
    assert content == {"chunks": [{"type": "markdown_text", "text": "Let me read it."}, card]}
    assert stream_content("", [card]) == {"chunks": [card]}
    assert chunk_problem(content["chunks"]) is None


def test_the_fake_refuses_chunks_slack_refuses() -> None:
    good = task_chunk(reading())
    assert chunk_problem([{**good, "status": "running"}])
    assert chunk_problem([{**good, "title": ""}])
    assert chunk_problem([{**good, "colour": "red"}])
    assert chunk_problem([{**good, "sources": [{"type": "url", "url": "https://x"}]}])
    assert chunk_problem([{"type": "sparkles"}])


# feedback -----------------------------------------------------------------------------------


def test_the_feedback_block_is_context_actions_with_feedback_buttons_naming_the_turn() -> None:
    block = feedback_block(123)
    assert block_problem([block]) is None
    [buttons] = block["elements"]
    assert buttons["type"] == "feedback_buttons" and buttons["action_id"] == FEEDBACK_ACTION_ID
    assert buttons["positive_button"]["value"] == "up:123"
    assert buttons["negative_button"]["value"] == "down:123"
    # slack_sdk reads it back as the same block.
    parsed = Block.parse(block)
    assert isinstance(parsed, ContextActionsBlock)
    assert parsed.to_dict() == block


def test_the_fake_refuses_feedback_blocks_slack_refuses() -> None:
    block = feedback_block(1)
    broken = json.loads(json.dumps(block))
    broken["elements"][0]["positive_button"]["text"] = "👍"  # not a plain_text object
    assert block_problem([broken])
    assert block_problem([{**block, "elements": []}])
    assert block_problem([{"type": "fancy"}])


def click(value: str, **changes: Any) -> dict[str, Any]:
    body = feedback_click(value, channel="C0GENERAL", message_ts="1764150000.500001")
    body.update(changes)
    return body


def test_a_feedback_click_is_read_as_one_vote() -> None:
    vote = parse_feedback_click(click("up:42"))
    assert vote is not None
    assert (vote.turn_id, vote.user, vote.vote, vote.team, vote.channel) == (
        42,
        "U0ALICE01",
        "up",
        "T0TEAM001",
        "C0GENERAL",
    )
    down = parse_feedback_click(click("down:7"))
    assert down is not None and down.vote == "down"


def test_a_hostile_or_foreign_click_is_no_vote() -> None:
    for value in ("up:0", "up:-1", "up:12x", "sideways:3", "up:1:2", "", "up:" + "9" * 40):
        assert parse_feedback_click(click(value)) is None, value
    assert parse_feedback_click(click("up:1", type="view_submission")) is None
    assert parse_feedback_click(click("up:1", user={"id": "not a user\n"})) is None
    assert parse_feedback_click(click("up:1", user="U0ALICE01")) is None
    assert parse_feedback_click(click("up:1", team=None)) is None
    assert parse_feedback_click(click("up:1", actions="up:1")) is None
    other = click("up:1")
    other["actions"][0]["action_id"] = "someone_elses_button"
    assert parse_feedback_click(other) is None
    # A non-string value, or no actions at all.
    weird = click("up:1")
    weird["actions"][0]["value"] = 5
    assert parse_feedback_click(weird) is None
    assert parse_feedback_click(click("up:1", actions=[])) is None


# the stop button ----------------------------------------------------------------------------


def stopped(**event: Any) -> dict[str, Any]:
    body = {
        "team_id": "T0TEAM001",
        "type": "event_callback",
        "event": {
            "type": "agent_session_stopped",
            "channel": "C0GENERAL",
            "thread_ts": "1764150000.000100",
            "user": "U0ALICE01",
            "streaming_message_ts": ["1764150001.500002"],
            "event_ts": "1764150009.000100",
        },
    }
    body["event"].update(event)
    return body


def test_the_stop_event_names_the_thread_its_user_and_the_streams_slack_stopped() -> None:
    stop = session_stop(stopped())
    assert stop is not None
    assert stop.thread_key == "slack/T0TEAM001/C0GENERAL/1764150000.000100"
    assert (stop.channel, stop.thread_ts, stop.user) == (
        "C0GENERAL",
        "1764150000.000100",
        "U0ALICE01",
    )
    assert stop.streams == ("1764150001.500002",)
    assert session_stop(stopped(streaming_message_ts=[]))  # no stream: still a stop


def test_a_malformed_stop_event_is_not_a_stop() -> None:
    assert session_stop(stopped(thread_ts=None)) is None
    assert session_stop(stopped(thread_ts="../../etc")) is None
    assert session_stop(stopped(channel={"id": "C1"})) is None
    assert session_stop(stopped(type="message")) is None
    odd = session_stop(stopped(user=["U1"], streaming_message_ts=["x", 5, "1.2"]))
    assert odd is not None and odd.user == "" and odd.streams == ("1.2",)


# titles and prompts -------------------------------------------------------------------------


def test_a_session_title_is_the_question_on_one_line_without_markup_and_capped() -> None:
    assert session_title("Redis or Feast\nfor `online` features?") == (
        "Redis or Feast for online features?"
    )
    long = session_title("why " * 200)
    assert len(long) <= SESSION_TITLE_MAX_CHARS and long.endswith("…")
    assert "<" not in session_title("<!channel> ping <https://evil|x>")
    assert len(thread_title("a" * 500)) <= 100


def test_setstatus_warnings_are_read_from_both_places_slack_puts_them() -> None:
    assert response_warnings({"ok": True}) == set()
    assert response_warnings({"warning": "missing_agent_session_stopped_event_subscription"}) == {
        "missing_agent_session_stopped_event_subscription"
    }
    assert response_warnings({"response_metadata": {"warnings": ["a", "b"]}}) == {"a", "b"}
    assert response_warnings("not a dict") == set()


def test_the_suggested_prompts_are_four_specific_questions_slack_accepts() -> None:
    assert len(SUGGESTED_PROMPTS) == 4
    titles = " ".join(p["title"].lower() for p in SUGGESTED_PROMPTS)
    for topic in ("latency", "pipeline", "feature", "production"):
        assert topic in titles
    for prompt in SUGGESTED_PROMPTS:
        assert set(prompt) == {"title", "message"}
        assert len(prompt["title"]) <= 40 and 80 <= len(prompt["message"]) <= 500


def test_the_pane_thread_is_read_from_assistant_thread_started() -> None:
    body = event_body("assistant_thread_started")
    assert pane_thread(body) == ("D0ALICEDM", "1764151600.000700")
    body["event"]["assistant_thread"]["thread_ts"] = "now"
    assert pane_thread(body) is None
    assert pane_thread({"event": {"assistant_thread": "D1"}}) is None


def test_opening_the_agent_dm_on_its_messages_tab_is_where_prompts_go() -> None:
    body = {"event": {"type": "app_home_opened", "channel": "D0ALICEDM", "tab": "messages"}}
    assert opened_dm(body) == "D0ALICEDM"
    assert opened_dm({"event": {**body["event"], "tab": "home"}}) is None
    assert opened_dm({"event": {**body["event"], "channel": "C0GENERAL"}}) is None
    assert opened_dm({"event": {**body["event"], "channel": ["D1"]}}) is None


def test_the_manifest_declares_an_agent_its_stop_event_and_interactivity() -> None:
    manifest = (REPO_ROOT / "slack-manifest.yml").read_text()
    listed = {line.strip()[2:] for line in manifest.splitlines() if line.strip().startswith("- ")}
    assert {
        "agent_session_stopped",
        "app_home_opened",
        "assistant_thread_started",
        "assistant_thread_context_changed",
        "chat:write",
        "assistant:write",
    } <= listed
    assert "\n  agent_view:\n    agent_description: " in manifest
    assert "\n  interactivity:\n    is_enabled: true\n" in manifest
