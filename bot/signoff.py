"""The sign-off invariant: every reply ends with SIGN_OFF exactly once.

`sign_off` is the only place that appends it. It first removes every line
the model wrote that is just the sign-off (any case, punctuation, emphasis,
quote marks), wherever it stands, rewords a copy quoted inside a sentence,
and strips what looks like the line at the end, so the exact line appears
once: at the close. `SignOffFilter` does the same to text while it streams,
so what a platform shows early is never taken back.
"""

from __future__ import annotations

import re

SIGN_OFF = "Done. What are we tackling next?"
# A copy quoted inside a sentence keeps its words but is no longer the exact line.
QUOTED_SIGN_OFF = "Done, what are we tackling next?"

# The line as a model might write it: a little Markdown emphasis, quotes or
# heading marks, any case, some spacing and punctuation between the two parts.
# Every repeat is bounded, so the line is never longer than SIGN_OFF_LINE_MAX.
_BODY = (
    r"done[ \t]{0,4}[.!,:;\-–—]{0,3}\s{0,4}what\s{1,4}are\s{1,4}we\s{1,4}tackling\s{1,4}next"
    r"[ \t]{0,4}[?!.]{0,3}"
)
_LINE = re.compile(rf"[ \t>*_#`~\"'-]{{0,12}}{_BODY}[ \t*_`~\"'\r]{{0,12}}", re.IGNORECASE)
_ENDING = re.compile(rf"[ \t>*_#`~\"'-]{{0,12}}{_BODY}[\s*_`~\"']{{0,12}}\Z", re.IGNORECASE)

SIGN_OFF_LINE_MAX = 120  # longer than any line _LINE matches
# The most characters at the end of the scrubbed text that `sign_off` may
# change (besides whitespace): streaming holds back more than this.
SIGN_OFF_TAIL = 130


def is_sign_off_line(line: str) -> bool:
    """True when a whole line (without its newline) is only the sign-off."""
    return len(line) <= SIGN_OFF_LINE_MAX and _LINE.fullmatch(line) is not None


def _scrub_line(line: str) -> str:
    return line.replace(SIGN_OFF, QUOTED_SIGN_OFF)


class _Lines:
    """Which lines stay: not a sign-off line, nor the blank line left doubled by dropping one."""

    def __init__(self) -> None:
        self.prev_blank = False  # the last line kept was empty
        self.dropped = False  # the line before this one was dropped

    def keep(self, line: str) -> bool:
        if is_sign_off_line(line) or (self.dropped and self.prev_blank and not line):
            self.dropped = True
            return False
        self.prev_blank, self.dropped = not line, False
        return True


def scrub_sign_off(text: str) -> str:
    """Drop lines that are only the sign-off and reword copies quoted inside other lines."""
    lines, state = text.split("\n"), _Lines()
    out = [_scrub_line(line) + "\n" for line in lines[:-1] if state.keep(line)]
    if state.keep(lines[-1]):
        out.append(_scrub_line(lines[-1]))
    return "".join(out)


def strip_sign_off(text: str) -> str:
    """Remove what looks like the sign-off at the end (and trailing whitespace)."""
    body = text.rstrip()
    floor = len(body) - SIGN_OFF_TAIL
    while True:
        # The line can only be at the end: search the tail, not the whole answer.
        match = _ENDING.search(body, max(0, len(body) - 2 * SIGN_OFF_LINE_MAX))
        if match is None or match.start() < floor:
            return body
        # Stripped wherever it starts, even glued to a word: leaving it would
        # put the line in the reply twice.
        body = body[: match.start()].rstrip()


def sign_off(text: str) -> str:
    """Return `text` ending with the sign-off line exactly once."""
    body = strip_sign_off(scrub_sign_off(text))
    return f"{body}\n\n{SIGN_OFF}" if body else SIGN_OFF


def ends_with_sign_off_once(text: str) -> bool:
    """True when `text` ends with the sign-off and contains it only there."""
    return text.endswith(SIGN_OFF) and text.count(SIGN_OFF) == 1


class SignOffFilter:
    """Applies `scrub_sign_off` to streamed text: the outputs joined equal the scrubbed input.

    A short line is held until it is complete (it might be the sign-off); a
    longer one flows, minus any tail that could start a quoted copy.
    """

    def __init__(self) -> None:
        self._line = ""  # the current line's text not released yet
        self._flowing = False  # part of the current line is out: it is kept
        self._lines = _Lines()

    def feed(self, delta: str) -> str:
        """Add streamed text; return what may be shown now."""
        text = self._line + delta
        out: list[str] = []
        while (newline := text.find("\n")) >= 0:
            line, text = text[:newline], text[newline + 1 :]
            if self._flowing or self._lines.keep(line):
                out.append(_scrub_line(line) + "\n")
            self._flowing = False
        if not self._flowing and len(text) > SIGN_OFF_LINE_MAX:
            self._flowing = self._lines.keep(text)  # too long to be dropped: always True
        if self._flowing:
            keep = _open_copy_length(text)
            out.append(_scrub_line(text[: len(text) - keep]))
            text = text[len(text) - keep :]
        self._line = text
        return "".join(out)

    def flush(self) -> str:
        """The end of the text: return what is still held."""
        line, self._line = self._line, ""
        flowing, self._flowing = self._flowing, False
        return _scrub_line(line) if flowing or self._lines.keep(line) else ""


def _open_copy_length(text: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of SIGN_OFF."""
    for size in range(min(len(text), len(SIGN_OFF) - 1), 0, -1):
        if SIGN_OFF.startswith(text[-size:]):
            return size
    return 0
