"""Imports every module that registers tools or commands, so the registries are complete.

Add a new tool module here.
"""

from __future__ import annotations

import bot.checkins.commands
import bot.commands
import bot.decisions.commands
import bot.extension_commands
import bot.quality
import bot.repo_commands
import bot.tools.delegate
import bot.tools.repo
import bot.tools.todos
import bot.tools.web
from bot.commands import registry as commands
from bot.tools import registry as tools

__all__ = ["commands", "tools"]
_ = (
    bot.checkins.commands,
    bot.commands,
    bot.decisions.commands,
    bot.extension_commands,
    bot.quality,
    bot.repo_commands,
    bot.tools.delegate,
    bot.tools.repo,
    bot.tools.todos,
    bot.tools.web,
)
