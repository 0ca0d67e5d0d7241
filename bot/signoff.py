"""The sign-off invariant: every reply ends with SIGN_OFF exactly once.

`sign_off` is the only place that appends it. It first strips whatever the
model wrote at the end that looks like the line (any case, punctuation,
emphasis or trailing whitespace), so the line is never duplicated.
"""

from __future__ import annotations

import re

SIGN_OFF = "Done. What are we tackling next?"

# The line as a model might write it: optional Markdown emphasis, quotes or
# heading marks, any case, flexible spacing and punctuation between the two parts.
_VARIANT = re.compile(
    r"[ \t>*_#`~\"'-]*done\s*[.!,:;\-–—]*\s*what\s+are\s+we\s+tackling\s+next\s*[?!.]*[\s*_`~\"']*\Z",
    re.IGNORECASE,
)


_TAIL = 400  # longer than any decorated form of the line


def strip_sign_off(text: str) -> str:
    """Remove every trailing copy of the sign-off line (and trailing whitespace)."""
    body = text.rstrip()
    while True:
        # The line can only be at the end: search the tail, not the whole answer.
        offset = max(0, len(body) - _TAIL)
        match = _VARIANT.search(body, offset)
        if match is None:
            return body
        # Stripped wherever it starts, even glued to a word: leaving it would
        # put the exact line in the reply twice.
        body = body[: match.start()].rstrip()


def sign_off(text: str) -> str:
    """Return `text` ending with the sign-off line exactly once."""
    body = strip_sign_off(text)
    return f"{body}\n\n{SIGN_OFF}" if body else SIGN_OFF


def ends_with_sign_off_once(text: str) -> bool:
    """True when `text` ends with the sign-off and contains it only there."""
    return text.endswith(SIGN_OFF) and text.count(SIGN_OFF) == 1
