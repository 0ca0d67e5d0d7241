"""Streaming an answer to a platform while the model writes it.

The sign-off rule and ping neutralising need to see whole words at the end of
the answer, so `ReplyStream` holds back the last stretch of text and releases
only what can no longer change. When the turn ends, `finish` returns what is
left to send so that everything sent equals the final, signed-off reply.
"""

from __future__ import annotations

HOLDBACK = 160  # longer than any form of the sign-off line or a Slack mention token


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
        # Release up to the last whitespace before the held-back tail, so a
        # token such as <!here> or a URL is never cut in two.
        cut = max(self._buffer.rfind(" ", 0, limit), self._buffer.rfind("\n", 0, limit))
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
        if final_text.startswith(self.sent):
            rest = final_text[len(self.sent) :]
        else:
            rest = "\n\n" + final_text
        self.sent += rest
        self._buffer = ""
        return rest
