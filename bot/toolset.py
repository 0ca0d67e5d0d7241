"""Imports every module that registers tools or commands, so the registries are complete.

Add a new tool module here.
"""

from __future__ import annotations

import bot.commands
import bot.delegate
import bot.repo_commands
import bot.repo_tools
import bot.todo_tools
import bot.web
from bot.commands import registry as commands
from bot.tools import registry as tools

__all__ = ["commands", "tools"]
_ = (bot.commands, bot.todo_tools, bot.repo_tools, bot.web, bot.delegate, bot.repo_commands)
