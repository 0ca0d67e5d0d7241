"""The console adapter: `archbot chat`, a REPL on a TTY, one message from a pipe."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import logging
import re
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from bot.consultant import Consultant
from bot.diagrams import DiagramRenderer
from bot.events import IncomingMessage, Reply, ReplyFile
from bot.progress import ToolProgress
from bot.streaming import rest_of_reply

log = logging.getLogger(__name__)

PROMPT = "you> "
DIAGRAM_DIR = "archbot-diagrams"  # under the working directory: PNGs of answers' diagrams
DIM, RESET = "\x1b[2m", "\x1b[0m"
# Terminal controls in model or repository text could move the cursor or retitle the
# window: everything but newline and tab goes (C0, DEL, C1).
_TERMINAL_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_text(text: str) -> str:
    """Text made safe to write to a terminal: control characters removed."""
    return _TERMINAL_CONTROLS.sub("", text)


def console_message(text: str, thread: str, user: str) -> IncomingMessage:
    """Build the core's event for a line typed at the console."""
    return IncomingMessage(
        platform="console",
        workspace="local",
        channel="console",
        thread=thread,
        user=user,
        user_name=user,
        text=text.strip(),
        event_id=uuid.uuid4().hex,
        is_dm=True,
    )


def console_user() -> str:
    """The operator's login name, or 'you'."""
    try:
        return getpass.getuser() or "you"
    except Exception:
        return "you"


async def answer_once(consultant: Consultant, text: str, thread: str, out: TextIO) -> int:
    """Answer all of stdin as one message; the exit code is 0 even when the model failed."""
    if not text.strip():
        print("archbot: nothing to say: stdin was empty", file=sys.stderr)
        return 2
    reply = await consultant.handle(console_message(text, thread, console_user()))
    _print_reply(consultant, reply, out)
    return 0


async def repl(
    consultant: Consultant, thread: str, out: TextIO, diagrams: DiagramRenderer | None = None
) -> int:
    """Interactive loop until EOF or `exit`; answers stream in as written, with tool progress.

    Ctrl-C during a turn stops that turn and the prompt comes back; at the
    prompt it leaves, as in any shell. Answers' diagrams are drawn as text.
    """
    user = console_user()
    print(
        f"archbot: thread console/{thread}. Ask a design question, `!help` for commands, "
        "Ctrl-D to leave.",
        file=out,
        flush=True,
    )
    while True:
        try:
            line = await asyncio.to_thread(input, PROMPT)
        except (EOFError, KeyboardInterrupt):
            print(file=out)
            return 0
        if line.strip().lower() in {"exit", "quit", ":q"}:
            return 0
        if not line.strip():
            continue
        writer = LiveWriter(out)
        msg = console_message(line, thread, user)
        with stop_on_interrupt(consultant, msg.thread_key, user, writer):
            reply = await consultant.handle(msg, on_text=writer.text, on_progress=writer.progress)
        writer.finish(reply)
        if reply is not None:
            consultant.mark_delivered(reply)
        if diagrams is not None and reply is not None and reply.kind == "answer":
            await show_diagrams(diagrams, reply.text, out, Path.cwd() / DIAGRAM_DIR)


class LiveWriter:
    """Writes one answer to the terminal as the model writes it, with dim tool-progress lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.sent = ""  # the answer's text written so far (as shown: controls removed)
        self._dim = out.isatty()
        self._at_line_start = True

    async def text(self, delta: str) -> None:
        """A piece of the answer, as it arrives."""
        shown = terminal_text(delta)
        self._emit(shown)
        self.sent += shown

    async def progress(self, item: ToolProgress) -> None:
        """A tool call ended: one short line (shown at its end, so each call is one line)."""
        if item.status == "in_progress":
            return
        self._line(f"  {terminal_text(item.line)}")

    def note(self, text: str) -> None:
        """A line from the console itself (not the answer)."""
        self._line(terminal_text(text))

    def finish(self, reply: Reply | None) -> None:
        """Write what the stream has not shown of the reply, then its attachments."""
        if reply is None:
            return
        final = terminal_text(reply.text)
        rest = rest_of_reply(self.sent, final) if self.sent else final
        if reply.kind == "stopped" and self.sent:
            rest = "\n\n" + final  # after the cut-off text, never merged into it
        self._emit(rest)
        if not self._at_line_start:
            self._emit("\n")
        for file in reply.files:
            print(terminal_text(_attachment(reply.text, file)), file=self.out, flush=True)

    def _line(self, text: str) -> None:
        if not self._at_line_start:
            self._emit("\n")
        self._emit(f"{DIM}{text}{RESET}\n" if self._dim else f"{text}\n")

    def _emit(self, text: str) -> None:
        """Write text that is already safe (ours, or passed through terminal_text)."""
        if not text:
            return
        self.out.write(text)
        self.out.flush()
        self._at_line_start = text.endswith("\n")


@contextmanager
def stop_on_interrupt(
    consultant: Consultant, thread_key: str, user: str, writer: LiveWriter
) -> Iterator[None]:
    """While a turn runs, Ctrl-C stops the turn instead of leaving the REPL."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)

    def interrupt() -> None:
        if consultant.stop(thread_key, user):
            writer.note("^C stopping…")
        else:
            writer.note("^C (nothing is running yet: the answer continues)")

    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here (a thread, Windows)
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if previous is not None:  # asyncio.run's own handler, for Ctrl-C at the prompt
            signal.signal(signal.SIGINT, previous)


async def show_diagrams(
    diagrams: DiagramRenderer, text: str, out: TextIO, directory: Path
) -> list[Path]:
    """After an answer's text: each diagram's terminal drawing and the path of its saved PNG."""
    drawings = await diagrams.drawings(text)
    saved = await asyncio.to_thread(_save, tuple(file for file, _ in drawings), directory)
    for file, drawing in drawings:
        print(f"\n[Diagram: {file.name.removesuffix('.png')}]\n{drawing}", file=out, flush=True)
    for path in saved:
        print(f"[Diagram saved: {path}]", file=out, flush=True)
    return saved


def _save(files: tuple[ReplyFile, ...], directory: Path) -> list[Path]:
    """Write the PNGs; a content hash in the name keeps two answers' "Diagram 1" apart."""
    saved: list[Path] = []
    for file in files:
        directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(file.content).hexdigest()[:8]
        path = directory / f"{file.name.removesuffix('.png')}-{digest}.png"  # a safe stem already
        path.write_bytes(file.content)
        saved.append(path)
    return saved


def _print_reply(consultant: Consultant, reply: Reply | None, out: TextIO) -> None:
    if reply is not None:
        print(reply.text, file=out, flush=True)
        for file in reply.files:
            print(_attachment(reply.text, file), file=out, flush=True)
        consultant.mark_delivered(reply)


def _attachment(text: str, file: ReplyFile) -> str:
    """A reply's file as the console shows it (its text only when the reply did not already)."""
    body = file.content.decode("utf-8", "replace")
    if body.strip() in text:
        return f"[Attached: {file.name}, {len(file.content):,} bytes, shown above]"
    return f"[Attached: {file.name}, {len(file.content):,} bytes]\n{body}\n[end of {file.name}]"
