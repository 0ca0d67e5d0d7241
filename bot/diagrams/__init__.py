"""Mermaid diagrams in answers, rendered to PNG in a worker process and attached.

`find_blocks` takes the ```mermaid fenced blocks out of an answer (pure, capped).
`DiagramRenderer` renders each in a `bot.diagrams.worker` child process started
from a small thread pool (at most two at once), with an address-space budget the
worker sets on itself and a wall-clock deadline after which it is killed. Results,
failures included, are cached in memory by a hash of the source, so an edit of the
answer or a retry does not render again. A block that fails stays a code block in
the text (it is never removed from it) with a one-line note in the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bot.diagrams.worker import EXIT_EMPTY, EXIT_OK, EXIT_PARSE, EXIT_TOO_BIG, PNG_SIGNATURE
from bot.events import ReplyFile
from bot.settings import DiagramSettings
from bot.workers import WorkerJob

log = logging.getLogger(__name__)

MAX_SOURCE_CHARS = 20_000  # a diagram of ~80 nodes is a few KB; more is not a diagram
MAX_IMAGE_BYTES = 1_000_000  # the adapters' reply-file cap; a 1200 px diagram is ~50 KB
MAX_BLOCKS = 4  # diagrams rendered per answer
RENDER_MEMORY = 1024 * 1024 * 1024  # the worker's address space (RLIMIT_AS)
MAX_RENDERS = 2  # workers at once: the machine's cores, not the loop, do this work
CACHE_ENTRIES = 128
CACHE_BYTES = 32_000_000  # ~600 typical diagrams; the entry count is usually the limit
MAX_DRAWING_CHARS = 20_000  # a terminal drawing of ~80 nodes is a few thousand
TITLE_CHARS = 80
# The worker gets no secrets: only what a Python interpreter needs to find its packages.

# A fence of three or more backticks or tildes with the info string "mermaid", closed by
# the same fence; CommonMark allows up to three spaces of indentation.
_BLOCK = re.compile(
    r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*mermaid[ \t]*\n(?P<body>.*?)^ {0,3}(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL | re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_TITLE = re.compile(r"^\s*title:?\s*(?P<title>.+)$", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Diagram:
    """One rendered diagram: its PNG, and the title and alt text it is attached with."""

    name: str
    title: str
    png: bytes

    def file(self) -> ReplyFile:
        """The diagram as a reply attachment."""
        return ReplyFile(self.name, self.png, "image/png")


def find_blocks(text: str, limit: int = MAX_BLOCKS) -> list[str]:
    """The sources of the ```mermaid blocks in `text`, in order, at most `limit` of them."""
    blocks = [m.group("body").strip("\n") for m in _BLOCK.finditer(text)]
    return [b for b in blocks if b.strip()][:limit]


def statement_count(source: str) -> int:
    """Mermaid statements in `source` (lines and `;`-separated parts, comments excluded).

    Each statement declares at most a few nodes, so this is a cheap upper bound on the
    layout's work, computed before any worker starts.
    """
    count = 0
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith("%%"):
            count += sum(1 for part in line.split(";") if part.strip())
    return max(0, count - 1)  # the first statement is the diagram's type


def diagram_title(source: str, fallback: str) -> str:
    """A title from the diagram's `title` line or its first line, else `fallback`; one line."""
    match = _TITLE.search(source)
    line = match.group("title") if match else source.strip().splitlines()[0]
    line = " ".join(line.replace("`", "'").split())[:TITLE_CHARS]
    if match or not re.fullmatch(r"(?i)(flowchart|graph)\s*\w*|\w+Diagram(-v2)?", line):
        return line or fallback
    return fallback


def file_stem(title: str) -> str:
    """A file name from a title: letters, digits, spaces, dots and dashes only."""
    stem = re.sub(r"[^\w .-]+", "", title, flags=re.ASCII).strip(" .")
    return stem[:TITLE_CHARS] or "diagram"


def terminal_safe(drawing: str, limit: int = MAX_DRAWING_CHARS) -> str:
    """A drawing with control characters (terminal escapes from hostile labels) removed, capped."""
    return _CONTROL.sub("", drawing)[:limit].rstrip()


def source_key(source: str) -> str:
    """The cache key of a diagram: a hash of its source."""
    return hashlib.sha256(source.encode("utf-8", errors="replace")).hexdigest()


class DiagramRenderer:
    """Renders Mermaid sources to PNG in `bot.diagrams.worker` processes, cached by source hash."""

    def __init__(self, settings: DiagramSettings, *, concurrency: int = MAX_RENDERS) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self.renders = 0  # workers started, for tests and the bench
        self._cache: OrderedDict[str, bytes | None] = OrderedDict()  # None: it cannot be drawn
        self._cached_bytes = 0
        self._slots: asyncio.Semaphore | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._jobs: set[WorkerJob] = set()
        self._closed = False

    async def files_for(self, text: str, fallback_title: str = "Diagram") -> tuple[ReplyFile, ...]:
        """The PNGs of the mermaid blocks in an answer that rendered; () when off or none did."""
        if not self.settings.enabled:
            return ()
        sources = find_blocks(text)
        results = await asyncio.gather(*(self.render(s) for s in sources))
        files: list[ReplyFile] = []
        for number, (source, png) in enumerate(zip(sources, results, strict=True), 1):
            if png is not None:
                title = diagram_title(source, f"{fallback_title} {number}")
                files.append(Diagram(f"{file_stem(title)}.png", title, png).file())
        return tuple(files)

    async def drawings(
        self, text: str, fallback_title: str = "Diagram"
    ) -> list[tuple[ReplyFile, str]]:
        """Each mermaid block Mermaid accepts: its PNG file and its terminal box drawing.

        termaid draws what Mermaid refuses, so only blocks that render to PNG are drawn.
        """
        if not self.settings.enabled:
            return []
        sources = find_blocks(text)
        pngs, texts = await asyncio.gather(
            asyncio.gather(*(self.render(s) for s in sources)),
            asyncio.gather(*(self.render(s, mode="text") for s in sources)),
        )
        drawn: list[tuple[ReplyFile, str]] = []
        for number, (source, png, out) in enumerate(zip(sources, pngs, texts, strict=True), 1):
            if png is not None and out is not None:
                title = diagram_title(source, f"{fallback_title} {number}")
                file = Diagram(f"{file_stem(title)}.png", title, png).file()
                drawn.append((file, terminal_safe(out.decode("utf-8", errors="replace"))))
        return drawn

    async def render(self, source: str, *, mode: str = "png") -> bytes | None:
        """The PNG (or, mode "text", the UTF-8 box drawing) of one Mermaid source.

        None, logged in one line, when it cannot be drawn.
        """
        key = f"{mode}:{source_key(source)}"
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        png = await self._render(source, key[:17], mode)
        if not self._closed:
            # Two answers may have rendered the same source at once: count its bytes once.
            self._cached_bytes -= len(self._cache.pop(key, None) or b"")
            self._cache[key] = png
            self._cached_bytes += len(png or b"")
            while len(self._cache) > CACHE_ENTRIES or self._cached_bytes > CACHE_BYTES:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= len(dropped or b"")
        return png

    async def _render(self, source: str, tag: str, mode: str) -> bytes | None:
        if len(source) > MAX_SOURCE_CHARS:
            log.info("diagram %s not drawn: %d chars of source is too long", tag, len(source))
            return None
        statements = statement_count(source)
        if statements > self.settings.max_nodes:
            log.info(
                "diagram %s not drawn: %d statements, more than max_nodes %d",
                tag,
                statements,
                self.settings.max_nodes,
            )
            return None
        command = [sys.executable, "-P", "-m", "bot.diagrams.worker", str(RENDER_MEMORY)]
        command += [str(max(1, round(self.settings.timeout_seconds + 1))), str(MAX_IMAGE_BYTES)]
        command.append(mode)
        job = WorkerJob(command, source.encode("utf-8", errors="replace"))
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            if self._closed:
                return None
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.concurrency, "diagram-render")
            self._jobs.add(job)
            self.renders += 1
            work = asyncio.get_running_loop().run_in_executor(
                self._threads, job.run, self.settings.timeout_seconds
            )
            try:
                code, out, err = await asyncio.shield(work)
            except OSError as exc:
                log.warning("diagram %s not drawn: the renderer could not start: %s", tag, exc)
                return None
            finally:
                if not work.done():  # cancelled: kill the worker, and still see it reaped
                    job.stop()
                    await asyncio.wait([work])
                self._jobs.discard(job)
        return self._verdict(tag, job, code, out, err)

    def _verdict(self, tag: str, job: WorkerJob, code: int, out: bytes, err: bytes) -> bytes | None:
        if job.timed_out:
            log.info(
                "diagram %s not drawn: rendering took longer than %g s",
                tag,
                self.settings.timeout_seconds,
            )
            return None
        if code == EXIT_OK and (out.startswith(PNG_SIGNATURE) or job.command[-1] == "text"):
            return out
        reasons = {
            EXIT_PARSE: "Mermaid could not parse it",
            EXIT_TOO_BIG: f"the image is larger than {MAX_IMAGE_BYTES:,} bytes",
            EXIT_EMPTY: "the renderer produced no image",
        }
        detail = err.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        reason = reasons.get(code, f"the renderer exited with {code}")
        log.info("diagram %s not drawn: %s (%s)", tag, reason, detail[0][:160])
        return None

    async def aclose(self) -> None:
        """Kill every render still running; their threads reap them."""
        self._closed = True
        for job in list(self._jobs):
            job.stop()
        if self._threads is not None:
            self._threads.shutdown(wait=False)
