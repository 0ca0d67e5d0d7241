"""The child process of a diagram render: Mermaid source in on stdin, PNG bytes out on stdout.

    python -P -m bot.diagrams.worker MEMORY_BYTES CPU_SECONDS MAX_OUTPUT_BYTES [png|text]

MODE text writes termaid's box drawing (UTF-8) for terminals instead of a PNG.

mermaidx runs the Mermaid parser and layout in an embedded JavaScript engine; a
hostile or huge diagram can spin for a minute, so it runs here, never on the bot's
event loop. This process caps its own address space and CPU time before it reads
a byte, and `bot.diagrams` kills it at the wall-clock deadline.
The exit code says what happened (the EXIT_* constants below).
"""

from __future__ import annotations

import resource
import sys

EXIT_OK = 0
EXIT_PARSE = 3  # Mermaid refused the source (a syntax error)
EXIT_TOO_BIG = 4  # the image came out larger than MAX_IMAGE_BYTES
EXIT_EMPTY = 5  # the renderer returned no PNG
EXIT_MEMORY = 6
EXIT_USAGE = 64
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTH = 1200


def main(argv: list[str]) -> int:
    """Apply the budgets, render stdin to PNG on stdout; the exit code is the verdict."""
    mode = argv[3] if len(argv) == 4 else "png"
    try:
        memory, cpu, max_image = (int(a) for a in argv[:3])
    except ValueError:
        return EXIT_USAGE
    if mode not in ("png", "text"):
        return EXIT_USAGE
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))  # backstop if the parent dies
    source = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    import mermaidx

    try:
        if mode == "text":
            out = mermaidx.render_ascii(source).encode("utf-8", errors="replace")
        else:
            out = mermaidx.render(source).png(width=WIDTH, background="#ffffff")
    except MemoryError:
        return EXIT_MEMORY
    except RuntimeError as exc:
        # The first line names the problem; the rest echoes the (untrusted) source.
        sys.stderr.write(str(exc).splitlines()[0][:200] if str(exc) else "parse error")
        return EXIT_PARSE
    if not out.strip() or (mode == "png" and not out.startswith(PNG_SIGNATURE)):
        return EXIT_EMPTY
    if len(out) > max_image:
        return EXIT_TOO_BIG
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
