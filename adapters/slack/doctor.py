"""`archbot doctor` for Slack: the tokens the configured mode needs, then auth.test."""

from __future__ import annotations

from adapters.slack.client import auth_status, make_client, secret
from bot.settings import Secrets, Settings


async def doctor_check(settings: Settings, secrets: Secrets) -> str | None:
    """`archbot doctor`: check the tokens for the configured mode and call auth.test."""
    if not settings.slack.enabled:
        return None
    token = secret(secrets.slack_bot_token, "SLACK_BOT_TOKEN")
    if settings.slack.mode == "http":
        secret(secrets.slack_signing_secret, "SLACK_SIGNING_SECRET")
    else:
        secret(secrets.slack_app_token, "SLACK_APP_TOKEN")
    return await auth_status(make_client(token, settings.slack.api_url), settings.slack.mode)
