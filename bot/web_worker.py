"""The child process of fetch_url: a fetched body in on stdin, its text out on stdout.

    python -m bot.web_worker MEMORY_BYTES CPU_SECONDS MODE ENCODING MAX_CHARS MAX_DEPTH

Decoding and HTML-to-Markdown conversion of a hostile page run here, never on
the bot's event loop: this process caps its own address space and CPU time
before it reads a byte, and `bot.web` kills it at the wall-clock deadline. It
imports only the standard library and html_to_markdown, so it starts fast.
The exit code says what happened (the EXIT_* constants below).
"""

from __future__ import annotations

import resource
import sys

EXIT_OK = 0
EXIT_CHARSET = 3  # the declared charset cannot decode text
EXIT_DEPTH = 4  # elements nested deeper than MAX_DEPTH
EXIT_MEMORY = 5  # the address-space budget ran out (Python side; Rust aborts instead)
EXIT_USAGE = 64


class CharsetError(Exception):
    """The declared charset is not a text encoding that can decode this body."""


class DepthExceeded(Exception):
    """The page nests elements deeper than any real page does."""


def to_text(raw: bytes, mode: str, encoding: str, max_chars: int, max_depth: int) -> str:
    """The readable text of a body: Markdown for HTML, the decoded body otherwise."""
    try:
        body = raw.decode(encoding, errors="replace")
    except (LookupError, UnicodeError, ValueError) as exc:
        raise CharsetError from exc
    if mode != "html":
        return body[: max_chars + 1]
    import html_to_markdown

    options = html_to_markdown.ConversionOptions(
        skip_images=True, extract_metadata=False, max_depth=max_depth
    )
    result = html_to_markdown.convert(body, options)
    if any(w.kind == html_to_markdown.WarningKind.DEPTH_LIMIT_EXCEEDED for w in result.warnings):
        raise DepthExceeded
    # One character more than the cap tells the parent the text was cut.
    return (result.content or "").strip()[: max_chars + 1]


def main(argv: list[str]) -> int:
    """Apply the budgets, convert stdin, write UTF-8 text to stdout; the exit code is the verdict."""
    try:
        memory, cpu, mode, encoding, max_chars, max_depth = argv
        limits = int(memory), int(cpu), int(max_chars), int(max_depth)
    except ValueError:
        return EXIT_USAGE
    resource.setrlimit(resource.RLIMIT_AS, (limits[0], limits[0]))
    resource.setrlimit(resource.RLIMIT_CPU, (limits[1], limits[1]))  # backstop if the parent dies
    try:
        raw = sys.stdin.buffer.read()
        text = to_text(raw, mode, encoding, limits[2], limits[3])
        sys.stdout.buffer.write(text.encode("utf-8", errors="replace"))
        sys.stdout.buffer.flush()
    except CharsetError:
        return EXIT_CHARSET
    except DepthExceeded:
        return EXIT_DEPTH
    except MemoryError:
        return EXIT_MEMORY
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
