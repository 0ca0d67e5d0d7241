"""Where discord.py connects, and one readable line for each way connecting fails."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

import aiohttp
import discord

log = logging.getLogger(__name__)

INTENT_HELP = (
    "Discord refused the gateway connection (close code 4014, disallowed intent): turn on "
    '"Message Content Intent" in the Developer Portal (Applications > your bot > Bot > '
    "Privileged Gateway Intents), save, then start archbot again"
)


def configure_api(api_url: str) -> None:
    """Point discord.py's REST calls (and interaction webhooks) at `api_url`."""
    discord.http.Route.BASE = api_url.rstrip("/")


def describe_connect_error(exc: BaseException) -> str:
    """One readable line for a failed login or gateway connection (never the token)."""
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return INTENT_HELP
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4014:
        return INTENT_HELP
    if isinstance(exc, discord.LoginFailure):
        return (
            "Discord rejected DISCORD_TOKEN (401 Unauthorized): "
            "copy the bot token again from the Developer Portal"
        )
    if isinstance(exc, discord.ConnectionClosed):
        reason = exc.reason or "no reason given"
        return f"Discord closed the gateway connection (close code {exc.code}): {reason}"
    if isinstance(exc, discord.GatewayNotFound):
        return (
            "Discord did not tell us its gateway address (GET /gateway/bot failed); "
            "check [discord] api_url"
        )
    if isinstance(exc, discord.HTTPException):
        return f"Discord API error {exc.status}: {exc.text or exc}"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return f"cannot reach Discord at {discord.http.Route.BASE}: {type(exc).__name__}: {exc}"
    return f"Discord connection failed: {type(exc).__name__}: {exc}"


def parse_error_line(event: str, exc: BaseException, data: Any) -> str:
    """One line for a gateway event discord.py could not parse: the event type and the error.

    Never the payload (an interaction carries its token); a token the error
    happens to quote is blanked.
    """
    detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:200]
    token = data.get("token") if isinstance(data, dict) else None
    if isinstance(token, str) and token:
        detail = detail.replace(token, "[token]")
    return f"discord: skipped gateway event {event}, which discord.py could not parse ({detail})"


def skip_unparsable(
    parsers: dict[str, Callable[[Any], None]], *, except_for: Collection[str] = ("READY",)
) -> None:
    """Make each gateway dispatch parser log and skip a payload it cannot parse.

    discord.py calls these parsers inside its websocket read loop
    (`DiscordWebSocket.received_message`), where an exception ends the
    connection and with it `archbot run`. READY stays as it is: without it
    there is no session to keep.
    """
    for event, parse in list(parsers.items()):
        if event not in except_for:
            parsers[event] = _skipping(event, parse)


def _skipping(event: str, parse: Callable[[Any], None]) -> Callable[[Any], None]:
    def parse_or_skip(data: Any) -> None:
        try:
            parse(data)
        except Exception as exc:
            log.warning(parse_error_line(event, exc, data))
            log.debug("discord: %s parse failure", event, exc_info=True)

    return parse_or_skip
