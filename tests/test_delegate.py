"""delegate_to_software_architect: a second model call with its own persona and budget."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.prompts import CONSULTANT_PROMPT, SOFTWARE_ARCHITECT_PROMPT
from bot.settings import LLMSettings, Secrets, Settings, StorageSettings
from bot.store import Store
from bot.tools import Services, ToolContext
from bot.toolset import tools
from tests.chat_helpers import chat, tool_result
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread

PLAN = "1. Modules: trading/features/online.py\n2. Interfaces: FeatureStore.get_online(...)\n3. Tests: ..."


@pytest.fixture
def model() -> Iterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic()
    server = ServerThread(fake.app()).start()
    try:
        yield fake, server.url
    finally:
        server.stop()


def system_text(body: dict[str, object]) -> str:
    system = body["system"]
    assert isinstance(system, list)
    return "".join(str(block["text"]) for block in system)


def test_delegation_through_archbot_chat(tmp_path: Path, model: tuple[FakeAnthropic, str]) -> None:
    fake, url = model
    fake.reply_tool_use(
        "delegate_to_software_architect",
        {"task": "Plan the online feature read path", "context": "Redis, 5 ms p99 budget"},
    )
    fake.reply_text(PLAN, usage={"input_tokens": 900, "output_tokens": 700})
    fake.reply_text("Here is the plan, summarised.")

    done = chat(
        "We picked Feast on Redis. How do we build it?",
        cwd=tmp_path,
        anthropic_url=url,
        env={"ARCHBOT_LLM__DELEGATE_MAX_TOKENS": "2222"},
    )

    assert done.returncode == 0, done.stderr
    assert "Here is the plan, summarised." in done.stdout
    consultant, delegated, final = fake.message_requests
    assert system_text(consultant.body) == CONSULTANT_PROMPT
    assert system_text(delegated.body) == SOFTWARE_ARCHITECT_PROMPT
    assert system_text(delegated.body) != system_text(consultant.body)
    assert "tools" not in delegated.body  # no tools: the delegate cannot recurse
    assert delegated.body["max_tokens"] == 2222
    sent = delegated.body["messages"][0]["content"][0]["text"]
    assert "Plan the online feature read path" in sent and "Redis, 5 ms p99 budget" in sent
    text, is_error = tool_result(final)
    assert not is_error
    assert text == f"Plan from the Software Architect:\n\n{PLAN}"

    db = sqlite3.connect(tmp_path / "a.db")
    try:
        purposes = [r[0] for r in db.execute("SELECT purpose FROM usage ORDER BY id")]
        delegation = db.execute(
            "SELECT output_tokens FROM usage WHERE purpose = 'delegation'"
        ).fetchone()
    finally:
        db.close()
    assert purposes == ["chat", "delegation", "chat"]
    assert delegation == (700,)


async def _ctx(tmp_path: Path, url: str | None) -> tuple[ToolContext, Store]:
    from bot.llm import ModelClient

    settings = Settings(
        storage=StorageSettings(path=str(tmp_path / "a.db")), llm=LLMSettings(max_retries=0)
    )
    secrets = Secrets.model_construct(
        anthropic_base_url=url, anthropic_api_key=SecretStr("sk-ant-test-not-real")
    )
    store = Store.open(settings.storage.path)
    thread = store.ensure_thread(
        "console/t",
        platform="console",
        workspace="local",
        channel="console",
        thread="t",
        channel_key="console/local/console",
    )
    services = Services(model=ModelClient(settings.llm, secrets, store))
    ctx = ToolContext(
        store=store,
        settings=settings,
        secrets=secrets,
        thread=thread,
        user="me",
        services=services,
    )
    return ctx, store


async def test_model_failure_is_a_tool_error(
    tmp_path: Path, model: tuple[FakeAnthropic, str]
) -> None:
    fake, url = model
    fake.reply_error(401, "authentication_error", "invalid x-api-key")
    ctx, store = await _ctx(tmp_path, url)
    try:
        text, is_error = await tools.call(
            "delegate_to_software_architect", {"task": "Plan it"}, ctx
        )
    finally:
        assert ctx.services.model is not None
        await ctx.services.model.aclose()
        store.close()
    assert is_error
    assert text.startswith("The Software Architect could not be reached: ")
    assert "401" in text
