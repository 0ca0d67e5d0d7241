"""Issue 14 in Discord: an answer's Mermaid diagram arrives in the thread as a PNG attachment."""

from __future__ import annotations

from tests.conftest import eventually
from tests.test_diagrams import FLOW
from tests.test_discord_adapter import Running, bot, bot_posts, fake_discord, quick_ready

__all__ = ["bot", "fake_discord", "quick_ready"]  # fixtures used here

PNG = b"\x89PNG\r\n\x1a\n"


async def test_the_thread_gets_the_diagram_as_an_attachment_after_the_text(bot: Running) -> None:
    fake, model = bot.discord, bot.model
    model.reply_text(f"The trading platform:\n\n```mermaid\n{FLOW}\n```")
    sent = fake.message(f"<@{fake.bot_id}> draw the trading platform", mention_bot=True)
    thread_id = sent["id"]

    def attached() -> list[tuple[str, str, bytes]]:
        return fake.files

    [(channel, name, content)] = await eventually(attached, "the diagram attachment", within=30)
    assert channel == thread_id and name.endswith(".png")
    assert content.startswith(PNG) and len(content) > 5_000
    text, picture = fake.messages[thread_id][-2:]
    assert "```mermaid" in text["content"]  # the source stays in the answer, before the picture
    assert picture["attachments"][0]["filename"] == name
    assert bot_posts(fake, thread_id)
