"""Ports the core is given: how it reaches a platform without importing it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.settings import Settings

# Platform adapters by name: the module that provides `create_adapter(core)` and
# `doctor_check(settings, secrets)`, and whether the settings enable it. Named as
# strings so the core never imports a platform library.
PLATFORM_ADAPTERS: dict[str, tuple[str, Callable[[Settings], bool]]] = {
    "slack": ("adapters.slack", lambda s: s.slack.enabled),
    "discord": ("adapters.discord.adapter", lambda s: s.discord.enabled),
}


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


class CheckinRunner(Protocol):
    """Posts a configured check-in now (`!checkin NAME`); given to the core by the composition root."""

    async def run_now(self, name: str, *, force: bool = False, requested_by: str = "") -> str:
        """Run the check-in for its current period; one line saying what happened."""
        ...
