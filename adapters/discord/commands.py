"""`/archbot ...`: the core's !commands as Discord application commands."""

from __future__ import annotations

from typing import Any, Protocol

import discord
from discord import app_commands

from adapters.discord.translate import command_text


class CommandRunner(Protocol):
    """What the commands need of the client: run one core !command for an interaction."""

    async def run_command(self, interaction: discord.Interaction[Any], text: str) -> None:
        """Run `text` as a core command and answer the interaction."""
        ...


class ArchbotCommands(app_commands.Group):
    """`/archbot ...`: the core's !commands as Discord application commands."""

    todo = app_commands.Group(name="todo", description="Change this thread's todo list")

    def __init__(self, client: CommandRunner) -> None:
        super().__init__(name="archbot", description="archbot, your ML systems architect")
        self.client = client

    @app_commands.command(name="help", description="What archbot can do")
    async def help(self, interaction: discord.Interaction[Any]) -> None:
        """`!help`."""
        await self.client.run_command(interaction, command_text("help"))

    @app_commands.command(name="todos", description="This thread's todo list")
    async def todos(self, interaction: discord.Interaction[Any]) -> None:
        """`!todos`."""
        await self.client.run_command(interaction, command_text("todos"))

    @todo.command(name="add", description="Add a todo to this thread")
    @app_commands.describe(text="What needs doing")
    async def todo_add(self, interaction: discord.Interaction[Any], text: str) -> None:
        """`!todo add TEXT`."""
        await self.client.run_command(interaction, command_text("todo", "add", text))

    @todo.command(name="done", description="Mark a todo as done")
    @app_commands.describe(number="The todo's number in /archbot todos")
    async def todo_done(
        self, interaction: discord.Interaction[Any], number: app_commands.Range[int, 1]
    ) -> None:
        """`!todo done N`."""
        await self.client.run_command(interaction, command_text("todo", "done", number))

    @app_commands.command(name="usage", description="Tokens and cost: thread, channel, per user")
    async def usage(self, interaction: discord.Interaction[Any]) -> None:
        """`!usage`."""
        await self.client.run_command(interaction, command_text("usage"))

    @app_commands.command(name="repo", description="Show or bind the GitHub repo for this channel")
    @app_commands.describe(repo="owner/name to bind (leave empty to show the current one)")
    async def repo(self, interaction: discord.Interaction[Any], repo: str | None = None) -> None:
        """`!repo [owner/name]`."""
        await self.client.run_command(interaction, command_text("repo", repo))

    @app_commands.command(name="checkin", description="This channel's check-ins, or post one now")
    @app_commands.describe(name="Check-in to post now (admins)")
    async def checkin(self, interaction: discord.Interaction[Any], name: str | None = None) -> None:
        """`!checkin [NAME]`."""
        await self.client.run_command(interaction, command_text("checkin", name))

    @app_commands.command(name="summary", description="Decisions, open questions and todos")
    async def summary(self, interaction: discord.Interaction[Any]) -> None:
        """`!summary`."""
        await self.client.run_command(interaction, command_text("summary"))

    @app_commands.command(name="adr", description="Write this thread's decision as an ADR")
    @app_commands.describe(record="`list` for this channel's records, or a record's number")
    async def adr(self, interaction: discord.Interaction[Any], record: str | None = None) -> None:
        """`!adr [list | N]`."""
        await self.client.run_command(interaction, command_text("adr", record))
