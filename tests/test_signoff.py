"""The sign-off invariant, whatever the model writes."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from bot.signoff import (
    SIGN_OFF,
    SIGN_OFF_TAIL,
    SignOffFilter,
    ends_with_sign_off_once,
    scrub_sign_off,
    sign_off,
    strip_sign_off,
)
from bot.streaming import HOLDBACK, ReplyStream, rest_of_reply

VARIANTS = [
    SIGN_OFF,
    SIGN_OFF.lower(),
    SIGN_OFF.upper(),
    f"**{SIGN_OFF}**",
    f"_{SIGN_OFF}_",
    "Done! What are we tackling next?",
    "Done — what are we tackling next?",
    "Done.  What are we tackling next",
    f"> {SIGN_OFF}",
    f"{SIGN_OFF}\n{SIGN_OFF}",
]

bodies = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300)
endings = st.sampled_from(["", *VARIANTS])
trailing = st.sampled_from(["", " ", "\n", "\n\n", " \n\t ", "\r\n"])


@given(body=bodies, ending=endings, tail=trailing)
def test_every_reply_ends_with_the_sign_off_exactly_once(body: str, ending: str, tail: str) -> None:
    text = sign_off(body + ("\n\n" if ending else "") + ending + tail)
    assert ends_with_sign_off_once(text)


@given(body=bodies)
def test_sign_off_is_idempotent(body: str) -> None:
    once = sign_off(body)
    assert sign_off(once) == once


def test_model_variants_are_replaced_not_duplicated() -> None:
    for variant in VARIANTS:
        text = sign_off(f"Use Kafka for the tick stream.\n\n{variant}  \n")
        assert text == f"Use Kafka for the tick stream.\n\n{SIGN_OFF}", variant


def test_sign_off_quoted_inside_a_sentence_keeps_its_words_but_is_not_a_second_copy() -> None:
    body = f'The bot says "{SIGN_OFF}" at the end of replies. Keep that in mind.'
    text = sign_off(body)
    assert text == (
        'The bot says "Done, what are we tackling next?" at the end of replies. '
        f"Keep that in mind.\n\n{SIGN_OFF}"
    )
    assert ends_with_sign_off_once(text)


def test_a_sign_off_line_quoted_mid_reply_is_dropped_and_only_the_closing_line_remains() -> None:
    model = (
        "Your bot's replies end like this:\n\n"
        f"> {SIGN_OFF}\n\n"
        "Keep that line out of the summaries you store."
    )
    assert sign_off(model) == (
        "Your bot's replies end like this:\n\n"
        f"Keep that line out of the summaries you store.\n\n{SIGN_OFF}"
    )


mid_variants = st.sampled_from(
    [
        *(f"\n{v}\n" for v in VARIANTS),
        f"\n> {SIGN_OFF}\n",
        f" {SIGN_OFF} ",
        f'"{SIGN_OFF}"',
        SIGN_OFF,
        f"**{SIGN_OFF}**, then",
        f"{SIGN_OFF}{SIGN_OFF}",
    ]
)


@given(
    parts=st.lists(st.tuples(bodies, mid_variants), max_size=4),
    body=bodies,
    ending=endings,
    tail=trailing,
)
def test_copies_anywhere_in_the_reply_leave_exactly_one_at_the_end(
    parts: list[tuple[str, str]], body: str, ending: str, tail: str
) -> None:
    text = "".join(a + b for a, b in parts) + body + ending + tail
    assert ends_with_sign_off_once(sign_off(text))


@given(text=st.text(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=12))
def test_the_stream_filter_releases_exactly_the_scrubbed_text(text: str, cuts: list[int]) -> None:
    text = text.replace("ZZ", f"\n> {SIGN_OFF}\n").replace("QQ", SIGN_OFF)
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    f = SignOffFilter()
    out = "".join(f.feed(text[a:b]) for a, b in itertools.pairwise(bounds)) + f.flush()
    assert out == scrub_sign_off(text)


words = st.sampled_from(
    ["Kafka", "partition", "by", "symbol;", "p99", "<!here>", "`code`", "**bold**", "-", ">"]
)
separators = st.sampled_from([" ", " ", " ", "\n", "\n\n"])
pieces = st.one_of(
    st.tuples(words, separators).map("".join),
    mid_variants,
    st.sampled_from([f"\n{v}" for v in VARIANTS]),
)


@given(pieces=st.lists(pieces, max_size=120), split=st.integers(1, 40))
def test_streamed_text_is_an_exact_prefix_of_the_final_reply(pieces: list[str], split: int) -> None:
    """Through the core's filter, then the platform's hold-back, as the Slack adapter streams."""
    assert HOLDBACK > SIGN_OFF_TAIL  # the hold-back covers all that sign_off may change
    raw = "".join(pieces)
    f, stream = SignOffFilter(), ReplyStream()
    sent = ""
    for i in range(0, len(raw), split):
        sent += stream.feed(f.feed(raw[i : i + split]))
    sent += stream.feed(f.flush())
    final = sign_off(raw)
    assert final.startswith(sent)
    assert sent + stream.finish(final) == final


@given(text=st.text(max_size=400), split=st.integers(1, 50))
def test_any_streamed_text_reads_as_the_final_reply(text: str, split: int) -> None:
    raw = text.replace("ZZ", f"\n> {SIGN_OFF}\n").replace("QQ", SIGN_OFF)
    f, stream = SignOffFilter(), ReplyStream()
    sent = "".join(stream.feed(f.feed(raw[i : i + split])) for i in range(0, len(raw), split))
    sent += stream.feed(f.flush())
    final = sign_off(raw)
    rest = rest_of_reply(sent, final)
    assert not (sent and rest == "\n\n" + final)  # never shown twice
    assert ends_with_sign_off_once(sent + rest)


def test_empty_reply_is_just_the_sign_off() -> None:
    assert sign_off("   \n") == SIGN_OFF
    assert strip_sign_off(SIGN_OFF) == ""
