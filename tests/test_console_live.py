"""Issue 11 on the console: `archbot chat` on a terminal prints the answer as it is written,
shows each tool call as a short line, and Ctrl-C stops the turn while the REPL goes on."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapters.console_adapter import LiveWriter, terminal_text
from bot.events import Reply
from bot.progress import ToolProgress
from bot.signoff import SIGN_OFF
from tests.conftest import clean_env, run_cli
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_cli import model_env


class Terminal:
    """`archbot chat` with its stdin on a pty (the REPL) and its output read as it comes."""

    def __init__(self, proc: subprocess.Popen[bytes], keyboard: int) -> None:
        self.proc = proc
        self.keyboard = keyboard
        self.output = b""

    def type(self, line: str) -> None:
        """Type a line and press Enter."""
        os.write(self.keyboard, line.encode() + b"\n")

    def read_until(self, text: str, within: float = 20.0) -> str:
        """Read the output until `text` shows; fail after `within` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + within
        while text.encode() not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} never showed; output so far:\n{self.shown}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
            if ready:
                self.output += os.read(self.proc.stdout.fileno(), 65536)
        return self.shown

    @property
    def shown(self) -> str:
        """Everything printed so far."""
        return self.output.decode(errors="replace")


@contextmanager
def chat_on_a_terminal(fake: FakeAnthropic, tmp_path: Path) -> Iterator[Terminal]:
    """Run the REPL as a user does, and leave it cleanly."""
    terminal, keyboard = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "chat"],
        stdin=keyboard,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=clean_env(**model_env(fake, tmp_path)),
    )
    os.close(keyboard)
    try:
        yield Terminal(proc, terminal)
    finally:
        if proc.poll() is None:
            os.write(terminal, b"exit\n")
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.close(terminal)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stdout and proc.stdout.close()
        proc.stderr.close()
        assert "Traceback" not in err, err


def test_text_appears_as_it_is_written_and_tool_calls_show_as_lines(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use("list_todos", {}, text="Let me check the plan.")
    head, tail = "Start with the gateway, then risk. ", "LAST-PIECE of the answer."
    fake_anthropic.reply_text(head + "The order router comes next. " * 12 + tail)
    fake_anthropic.stream_delay = 0.4  # between ~40-character deltas: a slow writer
    with chat_on_a_terminal(fake_anthropic, tmp_path) as term:
        term.read_until("you> ")
        term.type("plan the trading platform")
        shown = term.read_until("Start with the gateway")
        assert "LAST-PIECE" not in shown  # printed while the rest is still being written
        shown = term.read_until(SIGN_OFF)
        assert "✓ Reading the todo list" in shown
        assert shown.index("Let me check the plan.") < shown.index("✓ Reading the todo list")
        assert shown.index("✓ Reading the todo list") < shown.index("Start with the gateway")
        assert shown.count(SIGN_OFF) == 1 and "LAST-PIECE of the answer." in shown


def test_ctrl_c_stops_the_turn_and_the_prompt_comes_back(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 6.0  # a slow model; nothing queued for the stopped call
    with chat_on_a_terminal(fake_anthropic, tmp_path) as term:
        term.read_until("you> ")
        term.type("size the kafka cluster")
        deadline = time.monotonic() + 20
        while not fake_anthropic.message_requests:
            assert time.monotonic() < deadline, "the model was never called"
            time.sleep(0.05)
        started = time.monotonic()
        term.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the foreground process
        shown = term.read_until("Stopped.", within=5)
        assert time.monotonic() - started < 2.0
        assert term.proc.poll() is None  # the REPL is still there
        fake_anthropic.latency = 0.0
        fake_anthropic.reply_text("Three brokers per zone.")
        before = len(shown)
        term.type("and the brokers?")
        shown = term.read_until(f"Three brokers per zone.\n\n{SIGN_OFF}")
        assert shown[before:].count(SIGN_OFF) == 1
    history = fake_anthropic.message_requests[-1].body["messages"]
    said = [b.get("text", "") for m in history for b in m["content"]]
    assert any("size the kafka cluster" in t for t in said)
    assert any("cut off" in t for t in said)


def test_piped_chat_is_one_message_in_the_whole_reply_out(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use("list_todos", {})
    fake_anthropic.reply_text("Use a feature store.")
    out = run_cli(
        ["chat"], cwd=tmp_path, stdin="share features?", env=model_env(fake_anthropic, tmp_path)
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"Use a feature store.\n\n{SIGN_OFF}\n"  # no progress lines, no escapes


class _Out:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


async def test_the_live_writer_strips_terminal_escapes_and_finishes_the_reply_once() -> None:
    out = _Out()
    writer = LiveWriter(out)  # type: ignore[arg-type]
    await writer.text("Hello \x1b]0;owned\x07world")
    await writer.progress(ToolProgress("t1", "read_file", "Reading `a\x1b[2Jb`", "complete"))
    await writer.text(" and more")
    writer.finish(Reply(f"Hello \x1b]0;owned\x07world and more\n\n{SIGN_OFF}", "console/x"))
    text = "".join(out.parts)
    assert "\x1b]" not in text and "\x07" not in text and "\x1b[2J" not in text
    assert text.count(SIGN_OFF) == 1
    assert "\x1b[2m  ✓ Reading `a[2Jb`\x1b[0m\n" in text  # dim on a terminal, the escape gone
    assert terminal_text("a\tb\nc\x9bd") == "a\tb\ncd"
