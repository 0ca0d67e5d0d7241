"""Issue 8 item 3: a streamed Slack answer pings nobody, wherever the model's deltas and the
stream's cuts fall (pure splitter and neutraliser), and end to end through the Slack fake."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.slack.render import MARKDOWN_LIMIT, neutralize_broadcasts, render_parts
from adapters.slack.stream import NeutralStream, fit_streamed
from bot.signoff import SIGN_OFF, sign_off
from bot.streaming import TOKEN_MAX, ReplyStream, token_start
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_slack import FakeSlack, event_body
from tests.test_slack_adapter import RunningBot, answered

# What Slack would turn into a ping: a ping's opening (closed later or not), or a bare word.
LIVE_PING = re.compile(
    r"<!(?:channel|here|everyone|subteam)|(?<![\w@])@(?:channel|here|everyone)\b", re.IGNORECASE
)
NO_SPACE = "z" * 600

HOSTILE = [
    f"Heads up. <!channel|attention everyone>{NO_SPACE} and more words follow here.",
    "Ask <!subteam^S0PLAT|platform team> about the rollout, then <!here|read\nthis> twice.",
    "Everyone: <!everyone> <!HERE> <!Channel|loud label> @here and @channel, done.",
    "<!subteam^S0PLAT|@platform-team> first, then a link <https://example.com/x|a b c> ok",
]


def streamed(deltas: list[str], final: str | None = None) -> str:
    """The text a streamed Slack message and its follow-ups show for these model deltas."""
    stream = NeutralStream()
    pieces = [stream.feed(d) for d in deltas]
    pieces.append(stream.rest(final if final is not None else "".join(deltas)))
    return "".join(pieces)


def long_prefix() -> str:
    # Long enough that the stream releases text before the hostile part (hold-back is 160).
    return "The rollout plan has three phases and a freeze window. " * 6


@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_cut_position_of_two_deltas_leaves_no_live_ping(hostile: str) -> None:
    text = long_prefix() + hostile + " " + long_prefix()
    for i in range(len(text) + 1):
        shown = streamed([text[:i], text[i:]])
        assert not LIVE_PING.search(shown), (i, shown)
        assert shown == neutralize_broadcasts(text), i  # as if neutralised whole


@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_release_point_of_the_splitter_is_outside_a_token(hostile: str) -> None:
    # One character at a time: the splitter decides a release after every delta.
    text = long_prefix() + hostile + " " + long_prefix()
    stream = ReplyStream()
    sent = ""
    for ch in text:
        chunk = stream.feed(ch)
        if chunk:
            sent += chunk
            assert token_start(text, len(sent) - 1) == -1, sent[-60:]
            assert not LIVE_PING.search(neutralize_broadcasts(chunk))


def test_a_broadcast_split_across_deltas_is_neutralised_whole() -> None:
    prefix = long_prefix()
    shown = streamed([prefix + "tell <!chan", "nel> now " + long_prefix()])
    assert "@\u200bchannel now" in shown
    assert not LIVE_PING.search(shown)


def test_the_attention_everyone_token_streams_as_one_neutralised_word() -> None:
    text = long_prefix() + f"<!channel|attention everyone>{NO_SPACE}"
    stream = NeutralStream()
    first = stream.feed(text)
    assert first and "<" not in first  # the text before the token streams; the token waits
    shown = first + stream.rest(sign_off(text))
    assert f"@\u200bchannel{NO_SPACE}" in shown
    assert not LIVE_PING.search(shown)


def test_a_ping_left_open_is_broken_so_a_later_close_cannot_make_it_live() -> None:
    # Longer than any token: the stream may release text past it, so its opening is broken.
    text = "<!channel|" + "word " * (TOKEN_MAX // 5 + 40) + "> after"
    for i in range(0, len(text) + 1, 7):
        assert not LIVE_PING.search(streamed([text[:i], text[i:]]))
    assert not LIVE_PING.search(neutralize_broadcasts("tell <!here"))
    assert not LIVE_PING.search(neutralize_broadcasts("tell <!channel foo> now"))


def test_less_than_signs_in_code_do_not_stop_the_stream() -> None:
    code = "if a < b:\n    swap(a, b)\n" * 80
    stream = ReplyStream()
    released = stream.feed(code)
    assert len(released) >= len(code) - TOKEN_MAX - 200


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(
            [
                "<!channel|attention everyone>",
                "<!subteam^S0PLAT|platform team>",
                "<!here|read\nthis>",
                "<!everyone>",
                "<!chan",
                "nel>",
                "<",
                "!",
                ">",
                "|",
                "@here",
                " ",
                "\n",
                "word",
                NO_SPACE[:150],
                "<https://example.com|a link>",
            ]
        ),
        max_size=40,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_any_deltas_of_any_hostile_text_leave_no_live_ping(
    parts: list[str], cuts: list[int]
) -> None:
    text = long_prefix() + "".join(parts)
    points = sorted({min(c, len(text)) for c in cuts})
    deltas = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    shown = streamed(deltas, sign_off(text))
    assert not LIVE_PING.search(shown)
    assert shown.endswith(SIGN_OFF)


def test_a_streamed_message_is_never_cut_inside_a_link() -> None:
    link = "<https://example.com/runbooks/rollout|the rollout runbook, section two>"
    text = ("See " + link + " now. ") * 40
    for used in range(MARKDOWN_LIMIT - 32 - len(text), MARKDOWN_LIMIT - 32):
        head, tail = fit_streamed("x" * used, text)
        assert head + tail == text
        if head and tail:
            assert token_start(text, len(head)) == -1 or text[len(head)] == "<", len(head)


def test_posted_replies_are_neutralised_too() -> None:
    for hostile in HOSTILE:
        assert not any(LIVE_PING.search(p) for p in render_parts(hostile))


# end to end: the Slack fake sees every body the bot sent --------------------------------------


@pytest.mark.parametrize(
    "token",
    ["<!channel|attention everyone>", "<!subteam^S0PLAT|platform team>", "<!here|read\nthis>"],
)
async def test_a_streamed_answer_with_a_labelled_ping_reaches_slack_pinging_nobody(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic, token: str
) -> None:
    fake_anthropic.reply_text(long_prefix() + token + NO_SPACE + " That is the plan.")
    body = event_body("app_mention")
    await bot.send(body)
    messages = await answered(fake_slack, "C0GENERAL", body["event"]["ts"])
    assert messages[0].streamed
    assert fake_slack.calls_of("chat.startStream") and fake_slack.calls_of("chat.stopStream")
    texts = fake_slack.sent_texts()
    assert texts
    for text in texts:
        assert not LIVE_PING.search(text), text
    shown = "".join(m.text for m in messages)
    assert not LIVE_PING.search(shown)
    assert NO_SPACE in shown and shown.endswith(SIGN_OFF)
