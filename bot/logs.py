"""Logging set-up, called only by the entry point: text or JSON lines, a turn's
correlation id on every line, and secrets redacted wherever they appear."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable

from bot.consultant import correlation_id
from bot.settings import LogSettings, Secrets


class _RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        if self.secrets:
            message = record.getMessage()
            redacted = message
            for secret in self.secrets:
                redacted = redacted.replace(secret, "[redacted]")
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", "-"),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def secret_values(secrets: Secrets) -> list[str]:
    """The plain values of every configured secret (for redaction only)."""
    values = []
    for name in type(secrets).model_fields:
        value = getattr(secrets, name)
        if value is not None and hasattr(value, "get_secret_value"):
            values.append(value.get_secret_value())
    return values


def configure_logging(settings: LogSettings, secrets: Secrets) -> None:
    """Send logs to stderr in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactSecrets(secret_values(secrets)))
    if settings.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    # Chatty client libraries stay at warning unless we debug.
    if settings.level != "debug":
        for name in (
            "httpx",
            "httpx2",
            "anthropic",
            "slack_bolt",
            "slack_sdk",
            "discord",
            "apscheduler",
        ):
            logging.getLogger(name).setLevel(logging.WARNING)
