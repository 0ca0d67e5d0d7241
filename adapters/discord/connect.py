"""Where discord.py connects, and one readable line for each way connecting fails."""

from __future__ import annotations

import aiohttp
import discord

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
