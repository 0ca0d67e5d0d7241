"""archbot: a senior ML systems architect for Slack, Discord and the terminal."""

__version__ = "0.1.0"
