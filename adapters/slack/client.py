"""The Slack Web API client: building it, the errors its calls raise, its tokens, auth.test."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ArchbotError, ConfigError

# What a Web API call raises when Slack says no or cannot be reached (slack-sdk's async
# client lets aiohttp's connection errors through once its retry handlers give up).
CALL_ERRORS: tuple[type[BaseException], ...] = (
    SlackClientError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)

_SECRET_HINTS = {
    "SLACK_BOT_TOKEN": "export the app's Bot User OAuth Token (xoxb-...)",
    "SLACK_SIGNING_SECRET": '[slack] mode = "http" needs the app\'s signing secret',
    "SLACK_APP_TOKEN": "Socket Mode needs an app-level token (xapp-...) with connections:write, "
    'or set [slack] mode = "http"',
}


def make_client(token: str, api_url: str) -> AsyncWebClient:
    """A Web API client on `api_url` that retries connection errors and 429s (after Retry-After)."""
    return configure_client(AsyncWebClient(token=token), api_url)


def configure_client(client: AsyncWebClient, api_url: str) -> AsyncWebClient:
    """Point a client at `api_url` and add slack-sdk's 429 handler (it honours Retry-After)."""
    client.base_url = api_url if api_url.endswith("/") else f"{api_url}/"
    if not any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    return client


def secret(value: Any, name: str) -> str:
    """The secret's value; a ConfigError saying how to set it when it is missing."""
    raw = value.get_secret_value() if value is not None else ""
    if not raw:
        raise ConfigError(f"{name} is not set: {_SECRET_HINTS[name]}")
    return str(raw)


def describe(exc: BaseException) -> str:
    """A one-line account of a failed call for logs and errors (Slack's error code, not its body)."""
    if isinstance(exc, SlackApiError):
        return f"Slack API error {exc.response.get('error', 'unknown')} (HTTP {exc.response.status_code})"
    return f"{type(exc).__name__}: {exc}"


async def auth_status(client: AsyncWebClient, mode: str) -> str:
    """auth.test with `client`; a one-line status, or ArchbotError when Slack says no."""
    try:
        auth = await client.auth_test()
    except CALL_ERRORS as exc:
        raise ArchbotError(f"auth.test failed: {describe(exc)}") from None
    return f"auth.test ok: @{auth.get('user')} in {auth.get('team')} ({auth.get('team_id')}), {mode} mode"
