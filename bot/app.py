"""Composition root of the core: Settings -> Store -> ModelClient -> Consultant.

Adapters and the scheduler are wired on top of this by `adapters.runner`;
everything runs on one asyncio loop, so SQLite stays on one thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anthropic

from bot.consultant import Consultant
from bot.diagrams import DiagramRenderer
from bot.events import Reply, ReplyFile
from bot.github import create_client as create_github_client
from bot.llm import ModelClient
from bot.settings import Secrets, Settings, load_secrets
from bot.store import Store
from bot.tools import Services
from bot.tools.mcp import Extensions
from bot.toolset import commands, tools
from bot.web import WebFetcher

log = logging.getLogger(__name__)


@dataclass
class Core:
    """Everything platform-neutral, built once per process."""

    settings: Settings
    secrets: Secrets
    store: Store
    model: ModelClient
    services: Services
    consultant: Consultant
    extensions: Extensions | None = None
    diagrams: DiagramRenderer | None = None  # None: built from settings in __post_init__

    def __post_init__(self) -> None:
        if self.diagrams is None:
            self.diagrams = DiagramRenderer(self.settings.diagrams)

    async def attachments(self, reply: Reply) -> tuple[ReplyFile, ...]:
        """The diagram PNGs of an answer, rendered after its text went out (text first)."""
        if reply.kind != "answer" or self.diagrams is None:
            return ()
        return await self.diagrams.files_for(reply.text)

    async def aclose(self) -> None:
        """Close clients and the database."""
        if self.diagrams is not None:
            await self.diagrams.aclose()
        await self.model.aclose()
        for service in (self.services.github, self.services.web, self.extensions):
            if service is not None:
                await service.aclose()
        self.store.close()


def build_core(
    settings: Settings,
    secrets: Secrets | None = None,
    *,
    client: anthropic.AsyncAnthropic | None = None,
) -> Core:
    """Wire the core from settings (must be called inside the running event loop)."""
    secrets = secrets or load_secrets()
    store = Store.open(settings.storage.path)
    model = ModelClient(settings.llm, secrets, store, client=client)
    # Servers start on first use, not here: a slow one must not delay the adapters.
    extensions = Extensions(settings.mcp_servers) if settings.mcp_servers else None
    services = Services(
        model=model,
        github=create_github_client(settings, secrets, store),
        web=WebFetcher(settings.fetch),
        extensions=extensions,
    )
    consultant = Consultant(settings, secrets, store, model, tools, commands, services)
    return Core(settings, secrets, store, model, services, consultant, extensions)
