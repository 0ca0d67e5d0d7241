"""Streaming an answer to a platform while the model writes it.

The sign-off rule and ping neutralising need to see whole words at the end of
the answer, so `ReplyStream` holds back the last stretch of text and releases
only what can no longer change. When the turn ends, `finish` returns what is
left to send so that everything sent equals the final, signed-off reply.
"""

from __future__ import annotations

HOLDBACK = 160  # longer than any form of the sign-off line or a Slack mention token
# A `<...>` longer than this is prose or code (`a < b`, `x > y`), not a platform token.
TOKEN_MAX = 500


class ReplyStream:
    """Buffers text deltas and releases the part that is safe to show."""

    def __init__(self, holdback: int = HOLDBACK) -> None:
        self.holdback = holdback
        self.sent = ""
        self._buffer = ""

    def feed(self, delta: str) -> str:
        """Add model text; return the chunk that may be sent now ("" if none)."""
        self._buffer += delta
        limit = len(self._buffer) - self.holdback
        if limit <= 0:
            return ""
        # Release up to the last whitespace before the held-back tail that is not inside a
        # `<...>` token: `<!channel|attention everyone>` cut in two pieces pings nobody in
        # either piece, but Slack joins the pieces of a streamed message into one text.
        cut = _release_point(self._buffer, limit)
        if cut <= 0:
            return ""
        chunk, self._buffer = self._buffer[: cut + 1], self._buffer[cut + 1 :]
        self.sent += chunk
        return chunk

    def finish(self, final_text: str) -> str:
        """What is left to send so the message reads as `final_text`.

        When the final text does not continue what was sent (the model failed
        mid-answer and the reply is an error notice), it follows after a blank line.
        """
        rest = rest_of_reply(self.sent, final_text)
        self.sent += rest
        self._buffer = ""
        return rest


def token_start(text: str, pos: int) -> int:
    """Where the `<...>` token holding `text[pos]` starts (-1 when it is in none).

    A token has no `<` inside (platforms escape it) and is at most TOKEN_MAX long; one not
    yet closed at the end of `text` counts while it could still close within that length.
    """
    start = text.rfind("<", max(0, pos - TOKEN_MAX), pos + 1)
    if start == -1 or text.find(">", start, pos) != -1:
        return -1
    horizon = start + TOKEN_MAX + 1
    end = text.find(">", pos, horizon)
    reopened = text.find("<", start + 1, end if end != -1 else horizon)
    if reopened != -1:
        return -1
    if end != -1 or len(text) < horizon:
        return start
    return -1


def _release_point(text: str, limit: int) -> int:
    """The last whitespace before `limit` outside every `<...>` token (-1 when there is none)."""
    end = limit
    while end > 0:
        cut = max(text.rfind(" ", 0, end), text.rfind("\n", 0, end))
        if cut <= 0:
            return -1
        start = token_start(text, cut)
        if start == -1:
            return cut
        end = start  # try the whitespace before the token
    return -1


def rest_of_reply(sent: str, final: str) -> str:
    """What follows the streamed `sent` so the message reads as `final`.

    Whitespace differences are tolerated (the sign-off rule may trim what the
    model wrote at the end), so an answer is never repeated for a stray space.
    When `sent` has text `final` lacks (an error notice replaced the answer),
    the final text follows after a blank line.
    """
    i = j = 0
    while i < len(sent):
        if j < len(final) and sent[i] == final[j]:
            i, j = i + 1, j + 1
        elif sent[i].isspace():
            i += 1
        elif j < len(final) and final[j].isspace():
            j += 1
        else:
            return "\n\n" + final
    return final[j:]
