"""The Slack adapter package."""
