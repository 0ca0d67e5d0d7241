"""The repository tools and !repo, in-process, against the fake GitHub on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.commands import CommandContext
from bot.events import IncomingMessage
from bot.github import GitHubClient
from bot.settings import AccessSettings, GitHubSettings, Secrets, Settings, StorageSettings
from bot.store import Store
from bot.tools import Services, ToolContext
from bot.toolset import commands, tools
from tests.fakes.fake_anthropic import ServerThread
from tests.fakes.fake_github import FakeGitHub, trading_repo


@dataclass
class Env:
    fake: FakeGitHub
    store: Store
    settings: Settings
    client: GitHubClient
    ctx: ToolContext

    async def call(self, name: str, **tool_input: object) -> tuple[str, bool]:
        return await tools.call(name, tool_input, self.ctx)


@pytest.fixture
def fake_github() -> Iterator[tuple[FakeGitHub, str]]:
    fake = trading_repo(FakeGitHub())
    trading_repo(fake, "acme/research")
    trading_repo(fake, "evil/elsewhere")
    server = ServerThread(fake.app()).start()
    try:
        yield fake, server.url
    finally:
        server.stop()


def make_settings(url: str, db: Path, **github: object) -> Settings:
    gh = GitHubSettings(api_url=url, **github)  # type: ignore[arg-type]
    return Settings(github=gh, storage=StorageSettings(path=str(db)))


@pytest.fixture
async def env(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> AsyncIterator[Env]:
    fake, url = fake_github
    settings = make_settings(
        url, tmp_path / "a.db", default_repo="acme/trading", allowed_repos=["acme/r*"]
    )
    store = Store.open(settings.storage.path)
    client = GitHubClient(settings.github, "ghp-test-not-real", store)
    thread = store.ensure_thread(
        "slack/T1/C1/1.0",
        platform="slack",
        workspace="T1",
        channel="C1",
        thread="1.0",
        channel_key="slack/T1/C1",
    )
    ctx = ToolContext(
        store=store,
        settings=settings,
        secrets=Secrets(),
        thread=thread,
        user="U1",
        services=Services(github=client),
    )
    try:
        yield Env(fake, store, settings, client, ctx)
    finally:
        await client.aclose()
        store.close()


async def test_search_code_is_scoped_to_the_default_repo_and_returns_paths(env: Env) -> None:
    text, is_error = await env.call("search_code", query="FeatureStore")
    assert not is_error, text
    searches = env.fake.requests_to("/search/code")
    assert searches[-1].query["q"] == "FeatureStore repo:acme/trading"
    assert "text-match" in searches[-1].headers["Accept"]
    assert "src/trading/features/store.py" in text
    assert "https://github.com/acme/trading/blob/main/src/trading/serving/online.py" in text
    assert '<untrusted_content source="github code search acme/trading">' in text
    assert text.rstrip().endswith("</untrusted_content>")


async def test_search_code_with_no_hits_says_so(env: Env) -> None:
    text, is_error = await env.call("search_code", query="KafkaConsumerGroupThatDoesNotExist")
    assert not is_error
    assert "No code in acme/trading matches" in text


async def test_repo_outside_allowlist_is_refused_before_any_request(env: Env) -> None:
    before = len(env.fake.requests)
    for name, args in [
        ("search_code", {"query": "x"}),
        ("read_file", {"path": "README.md"}),
        ("find_usages", {"symbol": "FeatureStore"}),
        ("recent_changes", {}),
    ]:
        text, is_error = await env.call(name, repo="evil/elsewhere", **args)
        assert is_error, text
        assert "evil/elsewhere is not allowed" in text
        assert "No request was sent" in text
    assert len(env.fake.requests) == before


async def test_repo_matching_an_allowed_glob_is_used(env: Env) -> None:
    text, is_error = await env.call("read_file", path="README.md", repo="acme/research")
    assert not is_error, text
    assert env.fake.requests[-1].path == "/repos/acme/research/contents/README.md"


async def test_thread_binding_wins_over_channel_and_default(env: Env) -> None:
    env.store.bind_channel_repo("slack/T1/C1", "acme/research", "U1")
    await env.call("read_file", path="README.md")
    assert env.fake.requests[-1].path.startswith("/repos/acme/research/")
    env.store.set_thread_repo(env.ctx.thread.id, "evil/elsewhere")  # bound => allowed
    env.ctx.thread = env.store.get_thread_by_id(env.ctx.thread.id)
    await env.call("read_file", path="README.md")
    assert env.fake.requests[-1].path.startswith("/repos/evil/elsewhere/")


async def test_read_file_numbers_lines_and_links(env: Env) -> None:
    text, is_error = await env.call("read_file", path="src/trading/features/store.py")
    assert not is_error, text
    assert "https://github.com/acme/trading/blob/main/src/trading/features/store.py#L1-L" in text
    assert " 8| class FeatureStore:" in text
    assert "<untrusted_content" in text


async def test_read_file_caps_at_400_lines_and_says_where_it_cut(env: Env) -> None:
    text, _ = await env.call("read_file", path="data/big.csv")
    assert "400| 400,200.0,tick" in text
    assert "401| " not in text
    assert "Cut at line 400 of 1200" in text
    assert "start_line=401" in text
    text, _ = await env.call("read_file", path="data/big.csv", start_line=1190, end_line=1195)
    assert "1190| 1190,595.0,tick" in text and "1195| " in text and "1196| " not in text


async def test_read_file_refuses_binary(env: Env) -> None:
    text, is_error = await env.call("read_file", path="assets/logo.png")
    assert is_error
    assert "binary file" in text


async def test_read_file_of_a_directory_lists_it(env: Env) -> None:
    text, is_error = await env.call("read_file", path="src/trading")
    assert not is_error, text
    assert "is a directory" in text and "src/trading/features" in text


async def test_read_file_missing_is_a_clear_tool_error(env: Env) -> None:
    text, is_error = await env.call("read_file", path="nope.py")
    assert is_error
    assert "404" in text and "nope.py" in text


async def test_find_usages_finds_definition_and_importer(env: Env) -> None:
    text, is_error = await env.call("find_usages", symbol="FeatureStore")
    assert not is_error, text
    assert "src/trading/features/store.py [defines" in text
    assert "src/trading/serving/online.py [imports" in text
    assert "L3 import: from trading.features.store import FeatureStore" in text
    assert "https://github.com/acme/trading/blob/main/src/trading/serving/online.py#L3" in text
    # Definitions are listed before importers.
    assert text.index("features/store.py [") < text.index("serving/online.py [")


async def test_recent_changes_lists_merged_pr_in_window(env: Env) -> None:
    text, is_error = await env.call("recent_changes", days=7)
    assert not is_error, text
    assert "#42 Add FeatureStore online read path (by dana" in text
    assert "https://github.com/acme/trading/pull/42" in text
    assert "touched: src/trading/features/store.py, src/trading/serving/online.py" in text
    assert "Old backtest harness" not in text  # merged 40 days ago
    assert "Pin polars to 1.x" in text and "pyproject.toml" in text
    q = env.fake.requests_to("/search/issues")[-1].query["q"]
    assert q.startswith("repo:acme/trading is:pr is:merged merged:>=")


async def test_recent_changes_with_path_filters(env: Env) -> None:
    text, _ = await env.call("recent_changes", days=7, path="pyproject.toml")
    assert "Pin polars" in text
    assert "#42" not in text
    assert env.fake.requests_to("/repos/acme/trading/commits")[0].query["path"] == "pyproject.toml"


async def test_rate_limit_becomes_a_tool_error_quickly(env: Env) -> None:
    import time

    for mode in ("primary", "secondary"):
        env.fake.rate_limited = mode
        started = time.monotonic()
        text, is_error = await env.call("search_code", query="FeatureStore")
        assert is_error
        assert f"GitHub rate limit reached ({mode} limit)" in text
        assert time.monotonic() - started < 3


async def test_no_repository_configured_is_a_tool_error(tmp_path: Path, env: Env) -> None:
    env.ctx.settings = make_settings("http://127.0.0.1:9", tmp_path / "b.db")
    text, is_error = await env.call("search_code", query="x")
    assert is_error and "No repository is set" in text


# -- !repo ----------------------------------------------------------------------------------


def command_ctx(env: Env, user: str = "U1") -> CommandContext:
    msg = IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread="1.0",
        user=user,
        user_name=user,
        text="!repo",
        event_id="E1",
    )
    return CommandContext(
        env.store, env.ctx.settings, Secrets(), msg, env.ctx.thread, Services(github=env.client)
    )


async def test_repo_command_shows_and_binds(env: Env) -> None:
    ctx = command_ctx(env)
    assert "default repository **acme/trading**" in await commands.run(ctx, "!repo")
    reply = await commands.run(ctx, "!repo acme/research")
    assert "now uses **acme/research**" in reply
    assert env.store.channel_repo("slack/T1/C1") == "acme/research"
    assert "bound to **acme/research**" in await commands.run(ctx, "!repo")


async def test_repo_command_validates_shape_allowlist_and_admins(env: Env) -> None:
    ctx = command_ctx(env)
    assert "not a repository" in await commands.run(ctx, "!repo not-a-repo")
    assert "not in [github] allowed_repos" in await commands.run(ctx, "!repo evil/elsewhere")
    env.ctx.settings = env.ctx.settings.model_copy(
        update={"access": AccessSettings(admins=["UADMIN"])}
    )
    reply = await commands.run(command_ctx(env, user="U2"), "!repo acme/research")
    assert "Only admins" in reply
    assert env.store.channel_repo("slack/T1/C1") is None
    reply = await commands.run(command_ctx(env, user="UADMIN"), "!repo acme/research")
    assert "now uses **acme/research**" in reply


async def test_repo_command_refuses_a_repo_github_does_not_know(env: Env) -> None:
    reply = await commands.run(command_ctx(env), "!repo acme/rnothere")
    assert "Not bound" in reply and "404" in reply
    assert env.store.channel_repo("slack/T1/C1") is None
