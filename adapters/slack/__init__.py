"""The Slack adapter package: what `archbot run` and `archbot doctor` load (see `bot.ports`)."""

from adapters.slack.adapter import SlackAdapter, create_adapter
from adapters.slack.doctor import doctor_check

__all__ = ["SlackAdapter", "create_adapter", "doctor_check"]
