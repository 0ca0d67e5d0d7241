"""Extensions: tools of the team's own MCP servers, offered to the model as `<server>__<tool>`.

Each `[[mcp_servers]]` entry gets one long-lived session, opened on first use
by a task of its own (the SDK's task groups must be entered and left by one
task) and closed by `Extensions.aclose`. A session that breaks is reopened on
the next call, with backoff; a server that cannot start costs only its own
tools. The tools are listed once per server start, filtered by
`allowed_tools`, sanitised to the Messages API's rules and sorted, so the
request's tool list stays byte-stable between turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2

from bot.store import utcnow
from bot.tools import ToolContext
from bot.untrusted import untrusted

if TYPE_CHECKING:
    # The SDK itself is imported when a server first starts: it costs ~0.7 s and
    # ~15 MB, which a bot without extensions should not pay at start-up.
    from mcp import Client, StdioServerParameters
    from mcp.types import CallToolResult

    from bot.settings import McpServerSettings
    from bot.store import Store, ThreadRow

log = logging.getLogger(__name__)


def _import_sdk() -> None:
    """Load the parts of the `mcp` SDK a session uses (a no-op once loaded)."""
    import mcp.client.stdio
    import mcp.client.streamable_http  # noqa: F401


RESULT_MAX_CHARS = 40_000  # like fetch_url: what one tool result may put in the history
DESCRIPTION_MAX_CHARS = 4_000
SCHEMA_MAX_CHARS = 20_000  # a bigger input schema is a server bug; its tool is left out
MAX_TOOLS_PER_SERVER = 64
BACKOFF_MAX_SECONDS = 60.0
IDLE_PING_SECONDS = 10.0  # a session idle this long is pinged before use: it may have died
PING_TIMEOUT_SECONDS = 5.0
STOP_SECONDS = 5.0
_NAME_OK = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_NAME_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")

# Replaces the launcher process with the server, keeping only the variables
# named in argv[1]: the SDK would otherwise add HOME, PATH, USER and others.
_EXEC_ONLY_NAMED = (
    "import os, sys\n"
    "names = [n for n in sys.argv[1].split(',') if n]\n"
    "env = {n: os.environ[n] for n in names if n in os.environ}\n"
    "os.execve(sys.argv[2], sys.argv[2:], env)\n"
)


class ServerUnavailable(Exception):
    """The server could not be started or reached (a tool error for the model)."""


def offered_name(server: str, tool: str) -> str:
    """`<server>__<tool>` within the Messages API's name rules (`^[a-zA-Z0-9_-]{1,64}$`)."""
    name = _NAME_BAD_CHARS.sub("_", f"{server}__{tool}")
    if _NAME_OK.match(name) and name == f"{server}__{tool}":
        return name
    # Changed or cut: a hash of the real name keeps two such tools apart.
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


def clean_schema(schema: Any) -> dict[str, Any] | None:
    """The server's input schema as the Messages API takes it (an object schema), or None."""
    if not isinstance(schema, dict):
        return None
    try:
        text = json.dumps(schema, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    if len(text) > SCHEMA_MAX_CHARS:
        return None
    cleaned: dict[str, Any] = json.loads(text)
    for key in ("$schema", "$id"):
        cleaned.pop(key, None)
    if cleaned.get("type") != "object":
        return None
    if not isinstance(cleaned.get("properties", {}), dict):
        return None
    cleaned.setdefault("properties", {})
    return cleaned


@dataclass(frozen=True)
class ExtensionTool:
    """One allowed tool of one server, as the model sees it."""

    server: str
    tool: str  # the server's own name
    name: str  # the name offered to the model
    definition: dict[str, Any]


def render_result(server: str, tool: str, result: CallToolResult) -> str:
    """A tool result as text for the model: its text blocks, else its structured content."""
    parts: list[str] = []
    for block in result.content:
        kind = getattr(block, "type", "?")
        if kind == "text":
            parts.append(str(getattr(block, "text", "")))
        elif kind == "resource_link":
            parts.append(f"[resource: {getattr(block, 'uri', '')}]")
        else:
            mime = getattr(block, "mime_type", None) or ""
            parts.append(f"[{kind} content{' ' + mime if mime else ''}: not shown]")
    if not any(p.strip() for p in parts) and result.structured_content is not None:
        parts = [json.dumps(result.structured_content, indent=1, default=str)]
    text = "\n".join(parts).strip() or "(no output)"
    if len(text) > RESULT_MAX_CHARS:
        text = text[:RESULT_MAX_CHARS] + f"\n[... cut: {len(text):,} characters]"
    return untrusted(f"mcp:{server}/{tool}", text)


class McpServer:
    """One configured server: its session (owned by one task), state and allowed tools."""

    def __init__(self, config: McpServerSettings, environ: Mapping[str, str]) -> None:
        self.config = config
        self.name = config.name
        self._environ = environ
        self.state = "not started"  # | running | failed | stopped
        self.error: str | None = None
        self.listed: list[str] = []  # every tool the server listed at its last start
        self.tools: list[ExtensionTool] = []  # the allowed ones, sorted
        self.starts = 0
        self._failures = 0
        self._retry_at = 0.0
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._last_used = 0.0
        self._http_error: int | None = None  # the SDK's errors do not say which status

    # what the child process and the HTTP requests get ----------------------------

    def _secrets(self) -> list[str]:
        names = [*self.config.env, *self.config.headers_env.values()]
        return [v for n in names if len(v := self._environ.get(n, "")) >= 4]

    def redact(self, text: str) -> str:
        """`text` without the values of the variables passed to this server."""
        for value in self._secrets():
            text = text.replace(value, "[redacted]")
        return text

    def child_env(self) -> dict[str, str]:
        """The variables a stdio server gets: exactly those its `env` names (that are set)."""
        return {n: self._environ[n] for n in self.config.env if n in self._environ}

    def _stdio(self) -> StdioServerParameters:
        from mcp import StdioServerParameters

        command = shutil.which(self.config.command, path=self._environ.get("PATH"))
        if command is None:
            raise ServerUnavailable(f"command {self.config.command!r} not found")
        return StdioServerParameters(
            command=sys.executable,
            args=[
                "-I",
                "-c",
                _EXEC_ONLY_NAMED,
                ",".join(self.config.env),
                command,
                *list(self.config.args),
            ],
            env=self.child_env(),
        )

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for header, var in self.config.headers_env.items():
            value = self._environ.get(var)
            if not value:
                raise ServerUnavailable(f"headers_env {header}: ${var} is not set")
            headers[header] = value
        return headers

    # session lifecycle -----------------------------------------------------------

    async def ensure_started(self) -> Client:
        """The running session, starting it (or restarting it, after backoff) if needed."""
        async with self._lock:
            if self._client is not None and self._task is not None and not self._task.done():
                if await self._alive(self._client):
                    self._last_used = time.monotonic()
                    return self._client
                await self._shutdown()
                self._failed("the session had closed while idle")
                self._retry_at = 0.0  # found before a call: restart now
            wait = self._retry_at - time.monotonic()
            if self.state == "failed" and wait > 0:
                raise ServerUnavailable(f"{self.error}; next start attempt in {wait:.1f} s")
            return await self._start()

    async def _start(self) -> Client:
        await self._shutdown()
        # Our own import is not the server's start-up: it happens before the clock
        # starts, on a thread so the loop keeps serving while its modules load (~0.7 s).
        await asyncio.to_thread(_import_sdk)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Client] = loop.create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._own_session(ready, self._stop))
        self.starts += 1
        self._http_error = None
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                client = await asyncio.shield(ready)
            listing = await asyncio.wait_for(self._list_tools(client), self.config.timeout_seconds)
        except BaseException as exc:
            await self._shutdown()
            reason = _describe(exc, f"did not start within {self.config.timeout_seconds:g} s")
            if self._http_error is not None:
                reason += f" (HTTP {self._http_error})"
            self._failed(f"could not start: {reason}")
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ServerUnavailable(str(self.error)) from None
        self._set_tools(listing)
        self._client = client
        self._last_used = time.monotonic()
        self.state, self.error = "running", None
        log.info(
            "mcp server %s started: %d tools, %d offered", self.name, len(listing), len(self.tools)
        )
        return client

    async def _alive(self, client: Client) -> bool:
        """A recently used session is taken as alive; an idle one must answer a ping."""
        if time.monotonic() - self._last_used < IDLE_PING_SECONDS:
            return True
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                await client.send_ping()
        except Exception:
            return False
        return True

    async def _own_session(self, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        """Enter and leave the SDK client in this one task; live until `stop` is set."""
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.config.url:
                    http = await stack.enter_async_context(
                        httpx2.AsyncClient(
                            headers=self._headers(),
                            timeout=httpx2.Timeout(30.0, read=300.0),
                            event_hooks={"response": [self._note_status]},
                        )
                    )
                    target: Any = streamable_http_client(self.config.url, http_client=http)
                else:
                    target = self._stdio()
                client = await stack.enter_async_context(
                    Client(target, cache=None, client_info=None)
                )
                if not ready.done():
                    ready.set_result(client)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(
                    exc if isinstance(exc, Exception) else ServerUnavailable("stopped")
                )
            elif not stop.is_set():
                log.warning(
                    "mcp server %s: session ended: %s", self.name, self.redact(_describe(exc, ""))
                )
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if not ready.done():
                ready.set_exception(ServerUnavailable("the session ended before it was ready"))

    async def _note_status(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self._http_error = response.status_code

    async def _list_tools(self, client: Client) -> list[Any]:
        tools: list[Any] = []
        cursor: str | None = None
        for _ in range(20):  # pages; a server that never stops paging is cut off
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    def _set_tools(self, listing: list[Any]) -> None:
        self.listed = sorted(t.name for t in listing)
        offered: dict[str, ExtensionTool] = {}
        for t in sorted(listing, key=lambda t: str(t.name)):
            if not self.config.tool_allowed(t.name):
                continue
            schema = clean_schema(t.input_schema)
            if schema is None:
                log.warning(
                    "mcp server %s: tool %s has an unusable input schema", self.name, t.name
                )
                continue
            name = offered_name(self.name, t.name)
            if name in offered:
                log.warning("mcp server %s: tool %s clashes with %s", self.name, t.name, name)
                continue
            description = (t.description or f"{t.name} (from the {self.name} MCP server)").strip()
            definition = {
                "name": name,
                "description": description[:DESCRIPTION_MAX_CHARS],
                "input_schema": schema,
            }
            offered[name] = ExtensionTool(self.name, t.name, name, definition)
            if len(offered) >= MAX_TOOLS_PER_SERVER:
                log.warning(
                    "mcp server %s: only its first %d tools are offered", self.name, len(offered)
                )
                break
        self.tools = sorted(offered.values(), key=lambda x: x.name)

    def _failed(self, reason: str) -> None:
        self._failures += 1
        # The first failure is retried at the next call; then 2, 4, 8 ... 60 s apart.
        delay = (
            0.0 if self._failures == 1 else min(BACKOFF_MAX_SECONDS, 2.0 ** (self._failures - 1))
        )
        self._retry_at = time.monotonic() + delay
        self.state, self.error = "failed", self.redact(reason)
        log.warning("mcp server %s: %s", self.name, self.error)

    async def broken(self, reason: str) -> None:
        """The session failed mid-call: close it, so the next call starts a new one."""
        async with self._lock:
            await self._shutdown()
            self._failed(reason)

    def succeeded(self) -> None:
        """A call went through: the next failure is retried at once again."""
        self._failures = 0

    async def _shutdown(self) -> None:
        self._client = None
        task, stop = self._task, self._stop
        self._task = self._stop = None
        if task is None or stop is None:
            return
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_SECONDS)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        except BaseException:  # the session's own failure, already logged
            pass

    async def aclose(self) -> None:
        """Stop the session (at shutdown)."""
        async with self._lock:
            await self._shutdown()
            if self.state == "running":
                self.state = "stopped"


def _describe(exc: BaseException, timeout_text: str) -> str:
    """One line for an error from the SDK (whose errors often come inside exception groups)."""
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return timeout_text
    if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
        return "the server exited or closed the connection"
    if isinstance(exc, ServerUnavailable | MCPError):
        return str(exc)
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Extensions:
    """Every configured MCP server and the tools they offer per channel."""

    def __init__(
        self, servers: list[McpServerSettings], environ: Mapping[str, str] | None = None
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        self.servers = [McpServer(s, env) for s in servers]
        self._prefixes = tuple(f"{s.name}__" for s in self.servers)

    def servers_for(self, thread: ThreadRow) -> list[McpServer]:
        """The servers enabled in this thread's channel, in config order."""
        return [s for s in self.servers if s.config.enabled_in(thread.channel, thread.channel_key)]

    async def schemas_for(self, thread: ThreadRow) -> list[dict[str, Any]]:
        """Allowed tools of the servers enabled here, sorted; starts those not yet started."""
        servers = self.servers_for(thread)
        never = [s for s in servers if s.state in ("not started", "failed") and not s.tools]
        if never:
            # Started side by side: one slow server delays the turn once, by its own timeout.
            await asyncio.gather(*(_try_start(s) for s in never))
        tools = [t for s in servers for t in s.tools]
        return [t.definition for t in sorted(tools, key=lambda t: t.name)]

    def handles(self, name: str) -> bool:
        """True when `name` starts with a configured server's prefix."""
        return name.startswith(self._prefixes)

    async def call(self, name: str, raw_input: Any, ctx: ToolContext) -> tuple[str, bool]:
        """Run an allowed tool on its server; refuse anything else without reaching a server."""
        found = self._find(name, ctx.thread)
        if found is None:
            log.info("refused extension tool %s in %s: not allowed there", name, ctx.thread.key)
            return (
                f"{name} is not an allowed tool here: only the tools listed in this request "
                "can be called ([[mcp_servers]] allowed_tools and channels).",
                True,
            )
        server, tool = found
        if raw_input is not None and not isinstance(raw_input, dict):
            return f"Invalid input for {name}: expected an object", True
        started = time.monotonic()
        text, is_error = await self._call(server, tool, raw_input or {})
        record_tool_call(
            ctx.store,
            ctx,
            server=server.name,
            tool=tool.tool,
            is_error=is_error,
            latency_ms=round((time.monotonic() - started) * 1000),
        )
        return text, is_error

    def _find(self, name: str, thread: ThreadRow) -> tuple[McpServer, ExtensionTool] | None:
        for server in self.servers_for(thread):
            for tool in server.tools:
                if tool.name == name:
                    return server, tool
        return None

    async def _call(
        self, server: McpServer, tool: ExtensionTool, args: dict[str, Any]
    ) -> tuple[str, bool]:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED

        timeout = server.config.timeout_seconds
        try:
            client = await server.ensure_started()
        except ServerUnavailable as exc:
            return f"The {server.name} extension is unavailable: {exc}", True
        if not any(t.tool == tool.tool for t in server.tools):  # gone after a restart
            return f"{tool.name} is no longer offered by the {server.name} server.", True
        try:
            async with asyncio.timeout(timeout):
                result = await client.call_tool(tool.tool, args)
        except TimeoutError:
            return f"{tool.name} timed out after {timeout:g} s.", True
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                # An error answer: the session itself is fine.
                server.succeeded()
                return f"{tool.name} failed: {server.redact(str(exc))[:1000]}", True
            await server.broken(f"the server closed the session during {tool.tool}")
            return (
                f"{tool.name} failed: the {server.name} server closed the connection "
                "(it may have crashed); it is restarted at the next call.",
                True,
            )
        except Exception as exc:
            reason = _describe(exc, "timed out")
            await server.broken(f"session broke during {tool.tool}: {reason}")
            return (
                f"{tool.name} failed: the {server.name} server stopped answering "
                f"({server.redact(reason)}); it is restarted at the next call.",
                True,
            )
        server.succeeded()
        return render_result(server.name, tool.tool, result), bool(result.is_error)

    async def aclose(self) -> None:
        """Stop every server's session."""
        await asyncio.gather(*(s.aclose() for s in self.servers), return_exceptions=True)


async def _try_start(server: McpServer) -> None:
    with contextlib.suppress(ServerUnavailable):
        await server.ensure_started()


def record_tool_call(
    store: Store,
    ctx: ToolContext,
    *,
    server: str,
    tool: str,
    is_error: bool,
    latency_ms: int,
) -> None:
    """Append one extension call to the usage ledger (tool calls per server)."""
    try:
        store.conn.execute(
            "INSERT INTO extension_calls (thread_id, channel_key, user, server, tool, is_error,"
            " latency_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ctx.thread.id,
                ctx.thread.channel_key,
                ctx.user,
                server,
                tool,
                int(is_error),
                latency_ms,
                utcnow(),
            ),
        )
    except Exception:
        # The ledger is bookkeeping: a locked database must not fail the tool call.
        log.exception("recording a call of %s/%s failed", server, tool)


def calls_per_server(store: Store, channel_key: str, since: str) -> dict[str, tuple[int, int]]:
    """(calls, errors) per server in a channel since an ISO time."""
    rows = store.conn.execute(
        "SELECT server, count(*), coalesce(sum(is_error), 0) FROM extension_calls"
        " WHERE channel_key = ? AND created_at >= ? GROUP BY server",
        (channel_key, since),
    ).fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}
