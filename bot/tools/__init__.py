"""The tool registry: one decorated async function per tool the model can call.

    @registry.tool
    async def add_todo(ctx: ToolContext, title: Annotated[str, Field(description=...)]) -> str:
        '''Prompt-quality description the model reads.'''

The function's name is the tool's name, its docstring the description, and
its parameters after `ctx` the input schema (pydantic validates the model's
input against it). A tool returns text for the model, or raises `ToolError`
with a message the model should see; any other exception is logged and
reported to the model as a failure. Either way the turn goes on.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from bot.errors import ToolError
from bot.metrics import TOOL_CALLS
from bot.redact import Redactor, secret_values

if TYPE_CHECKING:
    from bot.github import GitHubClient
    from bot.llm import ModelClient
    from bot.ports import CheckinRunner
    from bot.settings import Secrets, Settings
    from bot.store import Store, ThreadRow
    from bot.web import WebFetcher

log = logging.getLogger(__name__)

ToolFunction = Callable[..., Awaitable[str]]


class ChannelTools(Protocol):
    """Tools that depend on the channel and on running servers (MCP extensions)."""

    async def schemas_for(self, thread: ThreadRow) -> list[dict[str, Any]]:
        """Definitions of the tools offered in this thread's channel, byte-stable per start."""
        ...

    def handles(self, name: str) -> bool:
        """True when `name` is one of this provider's tool names (allowed here or not)."""
        ...

    async def call(self, name: str, raw_input: Any, ctx: ToolContext) -> tuple[str, bool]:
        """Run a tool; return (text for the model, is_error). Never raises for tool failures."""
        ...


@dataclass
class Services:
    """Clients that tools use, built once by the composition root."""

    model: ModelClient | None = None
    github: GitHubClient | None = None
    web: WebFetcher | None = None
    checkins: CheckinRunner | None = None  # set where check-ins can post (archbot run, chat)
    extensions: ChannelTools | None = None


@dataclass
class ToolContext:
    """What a tool may touch during one turn."""

    store: Store
    settings: Settings
    secrets: Secrets
    thread: ThreadRow
    user: str
    services: Services = field(default_factory=Services)
    turn_id: int | None = None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_model: type[BaseModel]
    function: ToolFunction

    def schema(self) -> dict[str, Any]:
        """The tool definition sent to the Messages API."""
        schema = self.input_model.model_json_schema()
        _drop_titles(schema)
        schema.setdefault("properties", {})
        return {"name": self.name, "description": self.description, "input_schema": schema}


def _drop_titles(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("title", None)
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for prop in value.values():
                    _drop_titles(prop)
            else:
                _drop_titles(value)
    elif isinstance(node, list):
        for item in node:
            _drop_titles(item)


class ToolRegistry:
    """Tools by name, in registration order (so requests are byte-stable)."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._schema_cache: dict[frozenset[str], list[dict[str, Any]]] = {}

    def tool(self, function: ToolFunction) -> ToolFunction:
        """Register an async function as a tool (decorator)."""
        name = function.__name__
        if name in self._tools:
            raise ValueError(f"tool {name!r} registered twice")
        description = inspect.cleandoc(function.__doc__ or "")
        if not description:
            raise ValueError(f"tool {name!r} needs a docstring: it is the model's prompt")
        hints = get_type_hints(function, include_extras=True)
        params = list(inspect.signature(function).parameters.values())[1:]  # skip ctx
        fields: dict[str, Any] = {}
        for p in params:
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (hints[p.name], default)
        model = create_model(f"{name}_input", __config__=ConfigDict(extra="forbid"), **fields)
        self._tools[name] = Tool(name, description, model, function)
        self._schema_cache.clear()
        return function

    def names(self) -> list[str]:
        """Registered tool names in order."""
        return list(self._tools)

    def get(self, name: str) -> Tool | None:
        """The tool with this name, if registered."""
        return self._tools.get(name)

    def schemas(self, exclude: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """Tool definitions for a request, in registration order (built once, then reused)."""
        if exclude not in self._schema_cache:
            self._schema_cache[exclude] = [
                t.schema() for n, t in self._tools.items() if n not in exclude
            ]
        return self._schema_cache[exclude]

    async def schemas_for(self, ctx: ToolContext) -> list[dict[str, Any]]:
        """The registered tools, then the channel's extension tools (sorted by their provider)."""
        base = self.schemas()
        extensions = ctx.services.extensions
        if extensions is None:
            return base
        extra = await extensions.schemas_for(ctx.thread)
        return [*base, *extra] if extra else base

    async def call(self, name: str, raw_input: Any, ctx: ToolContext) -> tuple[str, bool]:
        """Run a tool; return (text for the model, is_error). Never raises for tool failures."""
        text, is_error = await self._call(name, raw_input, ctx)
        extensions = ctx.services.extensions
        known = name in self._tools or (extensions is not None and extensions.handles(name))
        outcome = "error" if is_error else "ok"
        TOOL_CALLS.labels(tool=name if known else "unknown", outcome=outcome).inc()
        return text, is_error

    async def _call(self, name: str, raw_input: Any, ctx: ToolContext) -> tuple[str, bool]:
        tool = self._tools.get(name)
        extensions = ctx.services.extensions
        if tool is None and extensions is not None and extensions.handles(name):
            return await extensions.call(name, raw_input, ctx)
        if tool is None:
            return f"There is no tool named {name!r}.", True
        try:
            args = tool.input_model.model_validate(raw_input or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            return f"Invalid input for {name}: {problems}", True
        try:
            result = await tool.function(ctx, **dict(args))
        except ToolError as exc:
            return _without_secrets(str(exc), ctx), True
        except Exception as exc:
            log.exception("tool %s failed", name)
            # Exception text can carry a header or URL with a token in it; it goes to the
            # model and into the stored history, so it is redacted like a log line.
            return _without_secrets(f"{name} failed: {type(exc).__name__}: {exc}", ctx), True
        return result, False


def _without_secrets(text: str, ctx: ToolContext) -> str:
    return Redactor(secret_values(ctx.secrets))(text)


registry = ToolRegistry()
tool = registry.tool
