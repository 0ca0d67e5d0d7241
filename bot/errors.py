"""The exceptions archbot raises, all rooted at one class.

    ArchbotError
    ├── ConfigError          a bad config value or file; names the key and the problem
    ├── StorageError         the database cannot be opened or migrated
    ├── ToolError            a tool failed; becomes an is_error tool_result, the turn goes on
    │   └── AccessDenied     a repo, URL or action outside what the config allows
    ├── CommandError         a !command with bad arguments; the user sees the message
    └── ModelUnavailable     the model could not answer (no key, 401, 429/529, timeout)

Every message is short, readable and free of secrets: they are shown to users
and printed by the CLI as one line.
"""

from __future__ import annotations


class ArchbotError(Exception):
    """Root of every error archbot raises on purpose."""


class ConfigError(ArchbotError):
    """A configuration value or file is invalid."""


class StorageError(ArchbotError):
    """The database could not be opened or migrated."""


class ToolError(ArchbotError):
    """A tool call failed; the model receives the message as an error result."""


class AccessDenied(ToolError):
    """The request is outside what the configuration allows."""


class CommandError(ArchbotError):
    """A !command was used wrongly; the message is shown to the user."""


class ModelUnavailable(ArchbotError):
    """The model could not produce an answer.

    `cause` is a short machine-readable reason: "no_key", "auth", "rate_limit",
    "overloaded", "timeout", "connection", "budget" or "error".
    """

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause
