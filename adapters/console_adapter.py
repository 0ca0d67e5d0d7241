"""The console adapter: `archbot chat`, a REPL on a TTY, one message from a pipe."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import logging
import sys
import uuid
from pathlib import Path
from typing import TextIO

from bot.consultant import Consultant
from bot.diagrams import DiagramRenderer
from bot.events import IncomingMessage, Reply, ReplyFile

log = logging.getLogger(__name__)

PROMPT = "you> "
DIAGRAM_DIR = "archbot-diagrams"  # under the working directory: PNGs of answers' diagrams


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
    """Interactive loop until EOF, `exit` or Ctrl-C; answers' diagrams are drawn as text."""
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
        reply = await consultant.handle(console_message(line, thread, user))
        _print_reply(consultant, reply, out)
        if diagrams is not None and reply is not None and reply.kind == "answer":
            await show_diagrams(diagrams, reply.text, out, Path.cwd() / DIAGRAM_DIR)


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
