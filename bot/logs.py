"""Logging set-up, called only by the entry point: text or JSON lines, a turn's
correlation id on every line, and secrets redacted wherever they appear."""

from __future__ import annotations

import json
import logging
import sys

from bot.consultant import correlation_id
from bot.redact import Redactor, secret_values
from bot.settings import LogSettings, Secrets


class RedactSecrets(logging.Filter):
    """Redacts a record's message, arguments, traceback and stack; adds the correlation id."""

    _formatter = logging.Formatter()

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record, with every secret in it replaced."""
        record.correlation_id = correlation_id.get()
        if not self.redact:
            return True
        try:
            message = original = record.getMessage()
        except Exception:  # bad %-arguments: logging would print them raw to stderr
            message = f"{record.msg} (log arguments that do not fit: {record.args!r})"
            original = ""
        redacted = self.redact(message)
        if redacted != original:
            record.msg, record.args = redacted, None
        if record.exc_info:
            # Formatters print exc_text when set; the live exception (and its
            # arguments) is dropped so no later formatter renders it unredacted.
            record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
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
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(settings: LogSettings, secrets: Secrets) -> Redactor:
    """Send logs to stderr in the configured format and level; return the redactor it uses."""
    redact = Redactor(secret_values(secrets))
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Filters sit on handlers, not loggers: a logger's filter never sees records
    # propagated from child loggers, a handler's sees them all.
    for each in root.handlers:
        each.addFilter(RedactSecrets(redact))
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
    return redact
