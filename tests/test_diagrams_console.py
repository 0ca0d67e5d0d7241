"""Issue 14 on the console: after an answer, each diagram as a terminal drawing and a saved PNG."""

from __future__ import annotations

import io
from pathlib import Path

from adapters.console_adapter import show_diagrams
from bot.diagrams import DiagramRenderer, terminal_safe
from bot.settings import DiagramSettings
from tests.test_diagrams import BROKEN, FLOW

PNG = b"\x89PNG\r\n\x1a\n"


async def test_the_console_draws_the_diagram_and_saves_its_png(tmp_path: Path) -> None:
    renderer = DiagramRenderer(DiagramSettings())
    out = io.StringIO()
    answer = f"Layout:\n```mermaid\n{FLOW}\n```\nDraft:\n```mermaid\n{BROKEN}\n```"
    [saved] = await show_diagrams(renderer, answer, out, tmp_path / "archbot-diagrams")
    await renderer.aclose()
    shown = out.getvalue()
    assert "[Diagram: Diagram 1]" in shown
    for label in ("Trading client", "API gateway", "Risk engine"):
        assert label in shown
    assert "►" in shown or "▶" in shown or ">" in shown  # an arrow is drawn, not just words
    assert f"[Diagram saved: {saved}]" in shown
    assert saved.parent == tmp_path / "archbot-diagrams"
    assert saved.read_bytes().startswith(PNG)
    assert "Diagram 2" not in shown  # the broken one is only in the answer's text


def test_a_drawing_cannot_send_terminal_escapes() -> None:
    assert terminal_safe("┌─┐\n│\x1b]0;pwned\x07A│\x9b\n└─┘") == "┌─┐\n│]0;pwnedA│\n└─┘"
