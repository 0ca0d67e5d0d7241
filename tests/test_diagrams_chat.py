"""Issue 14 acceptance on the console: `archbot chat` on a terminal draws an answer's diagram as
text and saves its PNG under the working directory; piped, the Markdown is left unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import clean_env, run_cli
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_cli import model_env
from tests.test_diagrams import FLOW

ANSWER = f"The trading platform:\n\n```mermaid\n{FLOW}\n```\n\nStart with the gateway."


def test_chat_on_a_terminal_shows_the_text_drawing(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text(ANSWER)
    terminal, keyboard = os.openpty()  # stdin is a terminal: the REPL, as a user runs it
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "chat"],
            stdin=keyboard,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=clean_env(**model_env(fake_anthropic, tmp_path)),
        )
        os.close(keyboard)
        os.write(terminal, b"draw the trading platform\nexit\n")
        out, err = proc.communicate(timeout=90)
    finally:
        os.close(terminal)
    shown = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "```mermaid" in shown  # the source stays in the answer
    drawing = shown[shown.index("[Diagram: Diagram 1]") :]
    assert "Trading client" in drawing and "Risk engine" in drawing and "┌" in drawing
    [png] = (tmp_path / "archbot-diagrams").glob("*.png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"[Diagram saved: {png}]" in shown
    assert "Traceback" not in err.decode()


def test_piped_chat_leaves_the_markdown_unchanged(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text(ANSWER)
    env = model_env(fake_anthropic, tmp_path)
    out = run_cli(["chat"], cwd=tmp_path, stdin="draw the trading platform", env=env)
    assert out.returncode == 0, out.stderr
    assert ANSWER in out.stdout and "[Diagram" not in out.stdout
    assert not (tmp_path / "archbot-diagrams").exists()
