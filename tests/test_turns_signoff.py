"""The sign-off exactly once, end to end: streamed through the core, and printed by `archbot chat`."""

from __future__ import annotations

from pathlib import Path

from bot.app import Core
from bot.signoff import SIGN_OFF, ends_with_sign_off_once
from tests.conftest import FAKE_KEY, run_cli
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg

QUOTING = (
    "Every answer of yours should close the same way:\n\n"
    f"> {SIGN_OFF}\n\n"
    "One more thing: measure the p99 before you pick a broker. " * 3
)


async def test_a_quoted_sign_off_never_reaches_the_stream(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use("list_todos", {}, text=f"Checking the list.\n{SIGN_OFF}\n")
    fake_anthropic.reply_text(QUOTING * 4)
    deltas: list[str] = []

    async def sink(text: str) -> None:
        deltas.append(text)

    reply = await core.consultant.handle(msg("How should replies end?", thread="q"), on_text=sink)
    assert reply is not None and ends_with_sign_off_once(reply.text)
    streamed = "".join(deltas)
    assert SIGN_OFF not in streamed
    assert reply.text.startswith(streamed.rstrip())  # shown early, never taken back
    assert "One more thing" in reply.text and reply.text.startswith("Checking the list.")


def test_archbot_chat_prints_a_quoted_sign_off_once_at_the_end(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text(QUOTING)
    done = run_cli(
        ["chat", "--thread", "q"],
        cwd=tmp_path,
        stdin="How should your replies end?",
        env={
            "ANTHROPIC_BASE_URL": fake_anthropic.url,  # type: ignore[attr-defined]
            "ANTHROPIC_API_KEY": FAKE_KEY,
            "ARCHBOT_STORAGE__PATH": str(tmp_path / "archbot.db"),
        },
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(SIGN_OFF) == 1
    assert done.stdout.rstrip().endswith(f"measure the p99 before you pick a broker.\n\n{SIGN_OFF}")
    assert "Every answer of yours should close the same way:" in done.stdout
