"""Pure parts of the Discord buttons and the working message: custom_ids and rendering."""

from __future__ import annotations

import pytest

from adapters.discord.buttons import (
    STOP_ID,
    StopButton,
    VoteButton,
    parse_vote,
    stop_view,
    vote_custom_id,
    vote_view,
)
from adapters.discord.working import HEADING, progress_line, working_text
from bot.progress import Source, ToolProgress, describe_call
from tests.fakes.fake_discord import component_errors


def test_a_vote_custom_id_round_trips_and_fits_discord() -> None:
    custom_id = vote_custom_id("up", 123)
    assert custom_id == "archbot:vote:up:123"
    assert parse_vote(custom_id) == ("up", 123)
    biggest = vote_custom_id("down", 10**18 - 1)
    assert len(biggest) <= 100 and parse_vote(biggest) == ("down", 10**18 - 1)


@pytest.mark.parametrize(
    "custom_id",
    [
        "archbot:vote:sideways:1",
        "archbot:vote:up:0",
        "archbot:vote:up:-4",
        "archbot:vote:up:01",
        "archbot:vote:up:1:extra",
        "archbot:vote:up:" + "9" * 19,
        "archbot:vote:up:1\n",
        "archbot:vote:UP:1",
        "archbot:vote:up:١٢",  # Arabic-Indic digits match \d, not [0-9]
        "archbot:vote:up:" + "1" * 200,
        "archbot:stop",
        "",
    ],
)
def test_a_hostile_or_malformed_custom_id_is_not_a_vote(custom_id: str) -> None:
    assert parse_vote(custom_id) is None


def test_vote_custom_id_refuses_what_it_cannot_parse_back() -> None:
    with pytest.raises(ValueError):
        vote_custom_id("sideways", 1)
    with pytest.raises(ValueError):
        vote_custom_id("up", 0)


def test_the_templates_take_every_id_under_their_prefix() -> None:
    """A malformed vote id still reaches VoteButton (and is answered), never "interaction failed"."""
    vote_template = VoteButton.__discord_ui_compiled_template__
    assert vote_template.fullmatch("archbot:vote:sideways:1")
    assert vote_template.fullmatch(vote_custom_id("up", 7))
    assert not vote_template.fullmatch("someone-else:vote:up:7")
    assert StopButton.__discord_ui_compiled_template__.fullmatch(STOP_ID)


async def test_the_views_are_persistent_and_valid_discord_components() -> None:
    votes, stop = vote_view(42), stop_view()
    assert votes.timeout is None and votes.is_persistent()
    assert stop.timeout is None and stop.is_persistent()
    vote_rows, stop_rows = votes.to_components(), stop.to_components()
    assert component_errors(vote_rows) is None and component_errors(stop_rows) is None
    ids = [b["custom_id"] for row in vote_rows for b in row["components"]]
    assert ids == ["archbot:vote:up:42", "archbot:vote:down:42"]
    [[stop_button]] = [row["components"] for row in stop_rows]
    assert stop_button["custom_id"] == STOP_ID and stop_button["label"] == "Stop"
    assert stop_button["style"] == 4  # danger


def test_the_fake_refuses_what_discord_refuses() -> None:
    button = {"type": 2, "style": 2, "label": "x", "custom_id": "a"}
    assert component_errors([{"type": 1, "components": [button]}]) is None
    assert component_errors([button]), "a button outside an action row"
    six = [dict(button, custom_id=str(i)) for i in range(6)]
    assert component_errors([{"type": 1, "components": six}]), "six buttons in a row"
    assert component_errors([{"type": 1, "components": [dict(button, custom_id="x" * 101)]}])
    assert component_errors([{"type": 1, "components": [button, dict(button)]}]), "duplicate id"
    assert component_errors([{"type": 1, "components": [dict(button, style=9)]}])
    rows = [{"type": 1, "components": [dict(button, custom_id=str(i))]} for i in range(6)]
    assert component_errors(rows), "six rows"


def _item(status: str = "in_progress") -> ToolProgress:
    item = describe_call(
        "toolu_1", "read_file", {"path": "pipelines/resample.py", "repo": "acme/trading"}
    )
    return item if status == "in_progress" else item.finished(status == "complete")


def test_a_progress_line_names_what_is_read_and_links_it_without_a_preview() -> None:
    line = progress_line(_item("complete"))
    assert line.startswith("✓ Reading `pipelines/resample.py` in acme/trading · ")
    assert "(<https://github.com/acme/trading/blob/HEAD/pipelines/resample.py>)" in line
    assert progress_line(_item()).startswith("… Reading")
    assert progress_line(_item("error")).startswith("✗ Reading")


def test_a_link_that_is_not_a_plain_github_url_is_dropped() -> None:
    for url in ("https://evil.example/x", "https://github.com/a/b> [x](https://evil.example)"):
        item = ToolProgress("t", "read_file", "Reading `x`", sources=(Source(url, "x"),))
        assert progress_line(item) == "… Reading `x`"
    sneaky = Source("https://github.com/acme/trading", "a](https://evil.example) [b")
    line = progress_line(ToolProgress("t", "x", "Running", sources=(sneaky,)))
    assert "](https://evil" not in line and line.count("](") == 1


def test_working_text_while_running_and_once_done() -> None:
    items = [_item("complete"), describe_call("toolu_2", "search_code", {"query": "FeatureStore"})]
    running = working_text(items)
    assert running.splitlines()[0] == HEADING
    assert len(running.splitlines()) == 3
    done = working_text(items, done=True)
    assert HEADING not in done
    assert all(line.startswith("-# ") for line in done.splitlines())
    assert working_text([]) == HEADING


def test_working_text_keeps_the_latest_lines_within_discords_limit() -> None:
    items = [
        ToolProgress(f"t{i}", "search_code", f"Searching acme/trading for `{'x' * 100}{i}`")
        for i in range(60)
    ]
    text = working_text(items)
    assert len(text) <= 2000
    lines = text.splitlines()
    assert lines[0] == HEADING and "earlier steps" in lines[1]
    assert lines[-1].endswith("x59`"), "the newest step is shown"
