"""`!extensions`: the MCP servers enabled in this channel, their state and their tools."""

from __future__ import annotations

import logging

from bot.commands import CommandContext, cap_reply, command
from bot.store import week_start
from bot.tools.mcp import Extensions, McpServer, calls_per_server

log = logging.getLogger(__name__)


def describe_server(server: McpServer, calls: tuple[int, int] | None) -> str:
    """One server's lines: transport, state, offered tools, this week's calls."""
    config = server.config
    where = f"HTTP {config.url}" if config.url else f"stdio `{config.command}`"
    state = server.state
    if server.error and state == "failed":
        state = f"failed: {server.error}"
    lines = [f"- **{server.name}** ({where}): {state}"]
    if server.tools:
        names = ", ".join(f"`{t.name}`" for t in server.tools)
        hidden = len(server.listed) - len(server.tools)
        note = f" ({hidden} more listed by the server, not allowed)" if hidden > 0 else ""
        lines.append(f"  tools: {names}{note}")
    elif server.listed:
        lines.append(f"  no tool allowed of {len(server.listed)} listed (see allowed_tools)")
    else:
        lines.append("  no tools known yet")
    if calls:
        lines.append(f"  calls this week: {calls[0]} ({calls[1]} failed)")
    return "\n".join(lines)


@command(
    "extensions",
    usage="!extensions",
    summary="the MCP servers and tools enabled in this channel",
    read_only=True,
)
async def extensions_command(ctx: CommandContext, args: str) -> str:
    """List this channel's extension servers (starting those not started yet)."""
    extensions = ctx.services.extensions
    servers = extensions.servers_for(ctx.thread) if isinstance(extensions, Extensions) else []
    if not servers:
        return (
            "No extensions are enabled in this channel. An operator adds MCP servers "
            "with `[[mcp_servers]]` entries in the config."
        )
    assert isinstance(extensions, Extensions)
    await extensions.schemas_for(ctx.thread)  # starts servers never started, as a turn would
    calls = calls_per_server(ctx.store, ctx.thread.channel_key, week_start().isoformat())
    lines = ["**Extensions here** (MCP servers; tools appear to me as `<server>__<tool>`):"]
    lines += [describe_server(s, calls.get(s.name)) for s in servers]
    return cap_reply("\n".join(lines))
