"""Imports every module that registers tools or commands, so the registries are complete.

Add a new tool module here.
"""

from __future__ import annotations

import bot.commands
import bot.todo_tools
from bot.commands import registry as commands
from bot.tools import registry as tools

__all__ = ["commands", "tools"]
_ = (bot.commands, bot.todo_tools)
