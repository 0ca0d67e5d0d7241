"""Ports the core is given: how it reaches a platform without importing it."""

from __future__ import annotations

from typing import Protocol


class Outbox(Protocol):
    """Posts the core's messages to one platform (check-ins, recovered turns)."""

    platform: str

    async def post(self, channel: str, thread: str | None, text: str) -> str:
        """Post `text` (Markdown, already signed off) and return the posted message's id.

        `thread=None` posts a new top-level message, whose id can then be used
        as the thread of follow-up posts. Splitting and formatting are the
        outbox's job.
        """
        ...


class PlatformAdapter(Protocol):
    """A running platform connection, started and stopped by `archbot run`."""

    platform: str
    outbox: Outbox

    async def start(self) -> None:
        """Connect and begin delivering messages to the core; returns once ready."""
        ...

    async def stop(self) -> None:
        """Stop taking new events and close connections."""
        ...

    async def check(self) -> str:
        """Reach the platform with the configured credentials; return a one-line status.

        Raise `ArchbotError` with a readable message when it cannot.
        """
        ...
