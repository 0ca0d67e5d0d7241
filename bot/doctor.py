"""`archbot doctor`: one line per check, so operators see what works before going live."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import anthropic

from bot.errors import ArchbotError
from bot.llm import describe_api_error, make_anthropic_client
from bot.ports import PLATFORM_ADAPTERS
from bot.redact import Redactor, secret_values
from bot.settings import Secrets, Settings
from bot.store import Store
from bot.tools.mcp import Extensions, ServerUnavailable

CheckResult = tuple[str, str, str]  # (name, "ok" | "FAIL" | "skip", detail)


async def check_model(settings: Settings, secrets: Secrets) -> CheckResult:
    """Send the configured model a one-token request: the call every turn makes."""
    if not secrets.model_configured:
        return ("model", "skip", "offline mode: set ANTHROPIC_API_KEY to talk to the model")
    client = make_anthropic_client(secrets, max_retries=0, timeout=15)
    try:
        # Not models.retrieve: a gateway answers that lookup itself while chats fail,
        # and some servers lack the endpoint.
        answer = await client.messages.create(
            model=settings.llm.model,
            max_tokens=1,
            messages=[{"role": "user", "content": "ping"}],
        )
        return ("model", "ok", f"{answer.model} answered a one-token request")
    except anthropic.APIError as exc:
        return ("model", "FAIL", str(describe_api_error(exc)))
    finally:
        await client.close()


async def run_checks(settings: Settings, secrets: Secrets) -> list[CheckResult]:
    """Run every check that applies to this configuration."""
    results: list[CheckResult] = [("config", "ok", "valid"), check_database(settings)]
    results.append(await check_model(settings, secrets))
    # Platform checks live beside their adapters.
    for label, (module_name, enabled) in PLATFORM_ADAPTERS.items():
        if not enabled(settings):
            results.append((label, "skip", "not enabled"))
            continue
        results.append(await _platform_check(module_name, label, settings, secrets))
    results.append(await _platform_check("bot.github", "github", settings, secrets, optional=True))
    results += await check_extensions(settings)
    # Details quote library errors, which may quote a header holding a token.
    redact = Redactor(secret_values(secrets))
    return [(name, status, redact(detail)) for name, status, detail in results]


def check_database(settings: Settings) -> CheckResult:
    """Open and migrate an existing database; never create one (doctor leaves no file behind)."""
    path = Path(settings.storage.path)
    missing = _missing_database(path)
    if missing is not None:
        return missing
    try:
        store = Store.open(path)
    except ArchbotError as exc:
        return ("database", "FAIL", str(exc))
    try:
        return ("database", "ok", f"{path} ({len(store.applied_migrations())} migrations)")
    finally:
        store.close()


def _missing_database(path: Path) -> CheckResult | None:
    """The database line for a file not created yet (None when it exists or is in memory)."""
    if str(path) == ":memory:" or path.exists():
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        return ("database", "FAIL", f"{path} does not exist and {parent} is not writable")
    return ("database", "ok", f"{path} does not exist yet; `archbot run` creates it")


async def check_extensions(settings: Settings) -> list[CheckResult]:
    """Start each `[[mcp_servers]]` entry, list its tools, and stop it again."""
    if not settings.mcp_servers:
        return []
    extensions = Extensions(settings.mcp_servers)
    results: list[CheckResult] = []
    try:
        for server in extensions.servers:
            label = f"mcp {server.name}"
            try:
                await server.ensure_started()
            except ServerUnavailable as exc:
                results.append((label, "FAIL", str(exc)))
                continue
            offered = ", ".join(t.tool for t in server.tools) or "none"
            results.append(
                (label, "ok", f"{len(server.listed)} tools, {len(server.tools)} allowed: {offered}")
            )
    finally:
        await extensions.aclose()
    return results


async def _platform_check(
    module_name: str, label: str, settings: Settings, secrets: Secrets, optional: bool = False
) -> CheckResult:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        if optional:
            return (label, "skip", "not available")
        return (label, "FAIL", "adapter not installed")
    check = getattr(module, "doctor_check", None)
    if check is None:
        return (label, "skip", "no check")
    try:
        detail = await check(settings, secrets)
    except ArchbotError as exc:
        return (label, "FAIL", str(exc))
    except Exception as exc:
        return (label, "FAIL", f"{type(exc).__name__}: {exc}")
    if detail is None:
        return (label, "skip", "not configured")
    return (label, "ok", str(detail))
