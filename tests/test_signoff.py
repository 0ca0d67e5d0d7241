"""The sign-off invariant, whatever the model writes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.signoff import SIGN_OFF, ends_with_sign_off_once, sign_off, strip_sign_off

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


def test_sign_off_inside_the_text_is_not_an_ending() -> None:
    body = f'The bot says "{SIGN_OFF}" at the end of replies. Keep that in mind.'
    text = sign_off(body)
    assert text.startswith(body)
    assert text.endswith(SIGN_OFF)


def test_empty_reply_is_just_the_sign_off() -> None:
    assert sign_off("   \n") == SIGN_OFF
    assert strip_sign_off(SIGN_OFF) == ""
