"""`!repo [owner/name]`: show or bind the repository the repository tools use in a channel."""

from __future__ import annotations

import logging

from bot.commands import CommandContext, command
from bot.errors import CommandError, ToolError
from bot.github import valid_repo_name
from bot.tools.repo import normalize_repo

log = logging.getLogger(__name__)


def current_binding(ctx: CommandContext) -> str:
    """Which repository the tools use here, and why."""
    channel_repo = ctx.store.channel_repo(ctx.thread.channel_key)
    default = ctx.settings.github.default_repo
    lines: list[str] = []
    if ctx.thread.repo:
        lines.append(f"This thread uses **{ctx.thread.repo}** (bound to the thread).")
    if channel_repo:
        lines.append(f"This channel is bound to **{channel_repo}**.")
    elif default:
        lines.append(f"This channel uses the default repository **{default}**.")
    if not lines:
        return (
            "No repository is bound here and no default is configured. "
            "Bind one with `!repo owner/name`."
        )
    return "\n".join(lines) + "\nChange it with `!repo owner/name`."


@command(
    "repo",
    usage="!repo [owner/name]",
    summary="show or bind the GitHub repository for this channel",
)
async def repo_command(ctx: CommandContext, args: str) -> str:
    """Show the binding, or bind a repository to the channel."""
    if not args:
        return current_binding(ctx)
    repo = normalize_repo(args.split()[0])
    if not valid_repo_name(repo):
        raise CommandError(
            f"`{args.split()[0]}` is not a repository: use owner/name, e.g. acme/trading."
        )
    if not ctx.is_admin:
        return "Only admins (see [access] admins) can change this channel's repository."
    gh = ctx.settings.github
    if gh.allowed_repos and not gh.repo_allowed(repo):
        globs = ", ".join(f"`{g}`" for g in gh.allowed_repos)
        return f"{repo} is not in [github] allowed_repos ({globs}); ask the operator to add it."
    note = ""
    client = ctx.services.github
    if client is not None:
        try:
            info = await client.repository(repo)
        except ToolError as exc:
            if "404" in str(exc):
                return f"Not bound: {exc}"
            note = f"\n(I could not check it on GitHub just now: {exc})"
        else:
            repo = info.full_name
    ctx.store.bind_channel_repo(ctx.thread.channel_key, repo, ctx.msg.user)
    log.info("channel %s bound to %s by %s", ctx.thread.channel_key, repo, ctx.msg.user)
    if ctx.thread.repo and ctx.thread.repo.lower() != repo.lower():
        note += f"\n(This thread stays on its own repository, {ctx.thread.repo}.)"
    return f"This channel now uses **{repo}** for code search, file reads and recent changes.{note}"
