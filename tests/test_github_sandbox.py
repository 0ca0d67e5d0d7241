"""The repository sandbox (issue 8, item 1): every GitHub request stays inside the one repository.

Pure functions for the validation and the last check on the built URL, then the
tools, `!repo` and the client against the fake GitHub, which records the raw
request target of everything it receives.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from githubkit.exception import RequestError
from githubkit_schemas.v2026_03_10.models import ContentFile
from pydantic import TypeAdapter

from bot.commands import CommandContext
from bot.errors import ToolError
from bot.events import IncomingMessage
from bot.github import (
    GitHubClient,
    RequestScope,
    check_path,
    check_ref,
    check_request_scope,
    check_search_query,
    encode_path,
    valid_repo_name,
)
from bot.settings import GitHubSettings, Secrets, Settings, StorageSettings
from bot.store import Store
from bot.tools import Services, ToolContext
from bot.tools.repo import MAX_BYTES, format_file, normalize_repo
from bot.toolset import commands, tools
from tests.fakes.fake_anthropic import ServerThread
from tests.fakes.fake_github import DATA, FakeGitHub, trading_repo

INSIDE = "/repos/acme/trading/"

# -- pure: names, paths, refs, queries ---------------------------------------------------------


@pytest.mark.parametrize(
    "repo",
    ["acme/trading", "a/b", "a-b-c/d.e_f-g", "A1/.github", "o" * 39 + "/x", "acme/" + "n" * 100],
)
def test_valid_repo_names(repo: str) -> None:
    assert valid_repo_name(repo)


@pytest.mark.parametrize(
    "repo",
    [
        "acme/trading/../../other/x",
        "acme/trading/contents",
        "acme/..",
        "acme/.",
        "../trading",
        "-acme/x",
        "acme-/x",
        "ac--me/x",
        "ac_me/x",
        "o" * 40 + "/x",
        "acme/" + "n" * 101,
        "acme/trading\n",
        "acme/trad ing",
        "acme",
        "/acme/trading",
        "acme/trading/",
        "acme/tr%61ding",
        "acme/trading?x=1",
        "acme/trading#x",
        "acme\\trading",
        "acme/trading\x00",
        "ａｃｍｅ/trading",
    ],
)
def test_invalid_repo_names(repo: str) -> None:
    assert not valid_repo_name(repo)


def test_normalize_repo_accepts_urls_but_never_cuts_a_tail_off() -> None:
    assert normalize_repo("https://github.com/acme/trading.git") == "acme/trading"
    assert normalize_repo("github.com/acme/trading/") == "acme/trading"
    assert normalize_repo("acme/trading/../../other/x") == "acme/trading/../../other/x"
    assert not valid_repo_name(normalize_repo("https://github.com/acme/trading/tree/main"))


HOSTILE_PATHS = [
    "../../../other-org/x/contents/y",
    "..",
    ".",
    "a/../b",
    "a/./b",
    "a//b",
    "/orgs/other-org/members",
    "/README.md",
    "%2e%2e/%2e%2e/other-org/x",
    "%2E%2E/x",
    ".%2e/x",
    "..%2fx",
    "a%2fb",
    "a%2Fb",
    "%252e%252e/%252e%252e/x",
    "..%252f..%252fx",
    "%25252e%25252e/x",
    "a\\..\\b",
    "..\\..\\other-org",
    "README.md?ref=main",
    "README.md#L1",
    "a\nb",
    "a\rb",
    "a\x00b",
    "a\tb",
    "a\x7fb",
    "a\u2028b",
    "\u2025/other-org",  # two dot leader: '..' under NFKC
    "\uff0e\uff0e/other-org",  # fullwidth full stops
    "a\uff0fb",  # fullwidth solidus
    "a\uff3cb",  # fullwidth reverse solidus
    "\uff05\uff12\uff45\uff05\uff12\uff45/x",  # fullwidth '%2e%2e'
    "a\uff1fb",  # fullwidth question mark
    "x" * 256,
    "a/" * 500 + "b",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_refused(path: str) -> None:
    with pytest.raises(ToolError, match="No request was sent"):
        check_path(path)


@pytest.mark.parametrize(
    ("path", "segments", "encoded"),
    [
        ("src/app.py", ["src", "app.py"], "src/app.py"),
        ("src/trading/", ["src", "trading"], "src/trading"),
        ("", [], ""),
        ("docs/my file.md", ["docs", "my file.md"], "docs/my%20file.md"),
        ("100%.txt", ["100%.txt"], "100%25.txt"),
        ("src/é.py", ["src", "é.py"], "src/%C3%A9.py"),
        (
            ".github/workflows/ci.yml",
            [".github", "workflows", "ci.yml"],
            ".github/workflows/ci.yml",
        ),
        ("a..b/...", ["a..b", "..."], "a..b/..."),
        ("a;b=c&d", ["a;b=c&d"], "a%3Bb%3Dc%26d"),
    ],
)
def test_ordinary_paths_are_encoded_segment_by_segment(
    path: str, segments: list[str], encoded: str
) -> None:
    assert check_path(path) == segments
    assert encode_path(segments) == encoded


@pytest.mark.parametrize(
    "ref",
    [
        "../../../other-org/x",
        "main/../x",
        "main?x=1",
        "main#x",
        "a b",
        "main\n",
        "%2e%2e",
        "%2fetc",
        "/main",
        "main/",
        "-x",
        ".x",
        "a/.b",
        "x.lock",
        "x.",
        "a//b",
        "a@{1}",
        "@",
        "a~1",
        "a^",
        "a:b",
        "a*",
        "a[b",
        "a\\b",
        "",
        "x" * 251,
        "\uff0e\uff0e/x",
        "main\x00",
    ],
)
def test_hostile_refs_are_refused(ref: str) -> None:
    with pytest.raises(ToolError, match="No request was sent"):
        check_ref(ref)


@pytest.mark.parametrize(
    "ref",
    [
        "main",
        "feature/x-1",
        "v1.2.3",
        "release/2026.11",
        "d670460b4b4aece5915caf5c68d12f560a9fe3e4",
    ],
)
def test_ordinary_refs_pass(ref: str) -> None:
    assert check_ref(ref) == ref


@pytest.mark.parametrize(
    "query",
    [
        "x repo:other/x",
        "REPO:other/x secrets",
        "x Repo:other/x",
        "x org:other-org",
        "x user:someone",
        "x -repo:acme/trading",
        'x "repo:other/x"',
        "x (org:other)",
        "self.repo:other/x",
        "x\nrepo:other/x",
        "ｒｅｐｏ：other/x",
        "x\x00",
        "",
        "   ",
    ],
)
def test_search_queries_cannot_widen_the_scope(query: str) -> None:
    with pytest.raises(ToolError, match="No request was sent"):
        check_search_query(query)


@pytest.mark.parametrize(
    "query",
    [
        "FeatureStore",
        "path:src/risk limit",
        "language:python kafka",
        "current_user: str",
        "myrepo:",
    ],
)
def test_ordinary_search_queries_pass(query: str) -> None:
    assert check_search_query(query) == query


# -- pure: the last check on the URL as it will be sent -----------------------------------------

REPO = RequestScope("acme", "trading")
API = httpx.URL("https://api.github.com/")


@pytest.mark.parametrize(
    "target",
    [
        "/repos/acme/trading",
        "/repos/acme/trading/contents/README.md?ref=main",
        "/repos/acme/trading/contents/",
        "/repos/acme/trading/contents/docs/my%20file.md",
        "/repos/acme/trading/contents/100%25.txt",
        "/repos/acme/trading/commits?path=../../x",  # a query value cannot move the path
    ],
)
def test_urls_inside_the_repository_pass(target: str) -> None:
    check_request_scope(httpx.URL(f"https://api.github.com{target}"), API, REPO)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.github.com/repos/other-org/x/contents/y",
        "https://api.github.com/repos/acme/trading/contents/../../../other-org/x",
        "https://api.github.com/orgs/other-org/members",
        "https://api.github.com/repos/acme/trading/contents/%2e%2e/%2e%2e/other/x",
        "https://api.github.com/repos/acme/trading/contents/%252e%252e/%252e%252e/x",
        "https://api.github.com/repos/acme/trading/contents/..%2f..%2fother",
        "https://api.github.com/repos/acme/trading/contents/a%5c..%5cb",
        "https://api.github.com/repos/acme/trading/contents/%25252e%25252e/x",
        "https://api.github.com/repos/acme/trading/contents/%2525252e%2525252e/x",
        "https://api.github.com/repos/acme/trading/contents/a%0ab",
        "https://api.github.com/repos/acme/trading/contents/a%3fb",
        "https://api.github.com/repos/acme/trading/contents/a%23b",
        "https://api.github.com/repos/acme/trading//contents",
        "https://api.github.com/repos/acme/trading2/contents/x",
        "https://api.github.com/repos/acme/tradingx",
        "https://api.github.com/repos/acme",
        "https://api.github.com/repositories/748213/contents/x",
        "https://api.github.com/search/code?q=x+repo:acme/trading",
        "https://api.github.com/rate_limit",
        "https://evil.example/repos/acme/trading",
        "http://api.github.com/repos/acme/trading",
        "https://api.github.com:8443/repos/acme/trading",
    ],
)
def test_urls_outside_the_repository_are_refused(url: str) -> None:
    with pytest.raises(ToolError, match="Refused to send a GitHub request"):
        check_request_scope(httpx.URL(url), API, REPO)


def test_no_scope_means_no_request() -> None:
    with pytest.raises(ToolError, match="Refused"):
        check_request_scope(httpx.URL("https://api.github.com/repos/acme/trading"), API, None)


def test_rate_limit_scope_reaches_only_rate_limit() -> None:
    scope = RequestScope(rate_limit=True)
    check_request_scope(httpx.URL("https://api.github.com/rate_limit"), API, scope)
    with pytest.raises(ToolError):
        check_request_scope(httpx.URL("https://api.github.com/repos/acme/trading"), API, scope)


@pytest.mark.parametrize(
    ("q", "ok"),
    [
        ("FeatureStore repo:acme/trading", True),
        ("FeatureStore REPO:acme/trading", True),
        ("x repo:acme/trading repo:other/x", False),
        ("x org:other repo:acme/trading", False),
        ("x user:me repo:acme/trading", False),
        ("x -repo:other/x repo:acme/trading", False),
        ("current_user: repo:acme/trading", True),
        ("x repo:acme/trading2", False),
        ("x", False),
    ],
)
def test_search_urls_must_name_exactly_the_repository(q: str, ok: bool) -> None:
    scope = RequestScope("acme", "trading", search="/search/code")
    url = httpx.URL("https://api.github.com/search/code", params={"q": q})
    if ok:
        check_request_scope(url, API, scope)
    else:
        with pytest.raises(ToolError):
            check_request_scope(url, API, scope)
    with pytest.raises(ToolError):  # another search endpoint is another scope
        check_request_scope(httpx.URL("https://api.github.com/search/issues?q=x"), API, scope)


def test_enterprise_base_path_is_kept() -> None:
    base = httpx.URL("https://ghe.example/api/v3/")
    check_request_scope(httpx.URL("https://ghe.example/api/v3/repos/acme/trading"), base, REPO)
    for url in (
        "https://ghe.example/repos/acme/trading",
        "https://ghe.example/api/v3x/repos/acme/t",
    ):
        with pytest.raises(ToolError):
            check_request_scope(httpx.URL(url), base, REPO)


# -- pure: a file on one long line -----------------------------------------------------------------


def content_of(text: str, path: str = "dist/app.min.js") -> ContentFile:
    data = text.encode()
    payload = {
        **json.loads((DATA / "content_file.json").read_text()),
        "path": path,
        "size": len(data),
        "content": base64.encodebytes(data).decode(),
    }
    return TypeAdapter(ContentFile).validate_python(payload)


def test_one_line_file_larger_than_the_cap_is_shown_cut_not_empty() -> None:
    text = "var a=1;" * 125_000  # 1 MB of minified code, no newline
    out = format_file("acme/trading", content_of(text), text, None, None, None)
    assert "(The file is empty.)" not in out
    assert "1| var a=1;var a=1;" in out
    assert "Line 1 is 1,000,000 characters long; only its first 39,996 are shown" in out
    assert "It is the last line asked for." in out
    assert len(out.encode()) < MAX_BYTES + 1000


def test_long_line_after_short_ones_is_left_for_the_next_call() -> None:
    text = "header\n" + "é" * 50_000 + "\ntail\n"
    out = format_file("acme/trading", content_of(text), text, None, None, None)
    assert "1| header" in out and "Cut at line 1 of 3" in out and "start_line=2" in out
    out = format_file("acme/trading", content_of(text), text, None, 2, None)
    assert "Line 2 is 50,000 characters long" in out
    assert "start_line=3 for the lines after it" in out
    assert "\ufffd" not in out  # cut on a character boundary


def test_an_empty_file_says_so() -> None:
    out = format_file("acme/trading", content_of("", "empty.txt"), "", None, None, None)
    assert out.endswith("(The file is empty.)")


# -- through the tools, !repo and the client, against the fake GitHub ------------------------------


@dataclass
class Env:
    fake: FakeGitHub
    store: Store
    client: GitHubClient
    ctx: ToolContext

    async def call(self, name: str, **tool_input: object) -> tuple[str, bool]:
        return await tools.call(name, tool_input, self.ctx)


@pytest.fixture
def fake_github() -> Iterator[tuple[FakeGitHub, str]]:
    fake = trading_repo(FakeGitHub())
    trading_repo(fake, "other-org/x")
    trading_repo(fake, "other/x")
    fake.add_file("acme/trading", "docs/my file.md", "spaces work\n")
    fake.add_file("acme/trading", "docs/100%.txt", "a literal percent\n")
    fake.add_file("acme/trading", "src/é.py", "accents work\n")
    fake.add_file("acme/trading", "dist/app.min.js", "var a=1;" * 125_000)
    fake.add_file("acme/trading", "data/huge.bin.json", "[" + "0," * 600_000 + "0]")
    server = ServerThread(fake.app()).start()
    try:
        yield fake, server.url
    finally:
        server.stop()


@pytest.fixture
async def env(tmp_path: Path, fake_github: tuple[FakeGitHub, str]) -> AsyncIterator[Env]:
    fake, url = fake_github
    settings = Settings(
        github=GitHubSettings(api_url=url, default_repo="acme/trading", allowed_repos=["acme/*"]),
        storage=StorageSettings(path=str(tmp_path / "a.db")),
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
        yield Env(fake, store, client, ctx)
    finally:
        await client.aclose()
        store.close()


HOSTILE_CALLS: list[tuple[str, dict[str, object]]] = [
    *(("read_file", {"path": p}) for p in HOSTILE_PATHS[:21]),
    ("read_file", {"path": "README.md", "ref": "../../../other-org/x"}),
    ("read_file", {"path": "README.md", "ref": "main?x=1"}),
    ("read_file", {"path": "README.md", "repo": "acme/trading/../../other/x"}),
    ("read_file", {"path": "README.md", "repo": "acme/trading/../../../orgs/other-org"}),
    ("read_file", {"path": "README.md", "repo": "acme/..%2f..%2fother-org"}),
    ("search_code", {"query": "secrets repo:other-org/x"}),
    ("search_code", {"query": "secrets REPO:other-org/x"}),
    ("search_code", {"query": "secrets org:other-org"}),
    ("search_code", {"query": "secrets user:someone"}),
    ("search_code", {"query": "ｒｅｐｏ：other-org/x secrets"}),
    ("search_code", {"query": "x", "repo": "acme/trading/../../other-org/x"}),
    ("find_usages", {"symbol": "FeatureStore", "repo": "acme/trading/../../other-org/x"}),
    ("recent_changes", {"path": "../../../other-org/x"}),
    ("recent_changes", {"path": "%2e%2e/%2e%2e/other-org"}),
    ("recent_changes", {"path": "/orgs/other-org"}),
    ("recent_changes", {"path": "src\\..\\..\\x"}),
    ("recent_changes", {"repo": "acme/trading/../../other-org/x"}),
]


@pytest.mark.parametrize(
    ("name", "tool_input"),
    HOSTILE_CALLS,
    ids=[f"{name}:{json.dumps(args, ensure_ascii=False)}" for name, args in HOSTILE_CALLS],
)
async def test_hostile_tool_calls_send_nothing(
    env: Env, name: str, tool_input: dict[str, object]
) -> None:
    text, is_error = await env.call(name, **tool_input)
    assert is_error, text
    assert env.fake.requests == []


async def test_ordinary_odd_names_are_read_with_each_segment_encoded(env: Env) -> None:
    for path, words in [
        ("docs/my file.md", "spaces work"),
        ("docs/100%.txt", "a literal percent"),
        ("src/é.py", "accents work"),
    ]:
        text, is_error = await env.call("read_file", path=path)
        assert not is_error and words in text, text
    assert [r.raw_path for r in env.fake.requests] == [
        "/repos/acme/trading/contents/docs/my%20file.md",
        "/repos/acme/trading/contents/docs/100%25.txt",
        "/repos/acme/trading/contents/src/%C3%A9.py",
    ]


async def test_every_tool_stays_inside_the_repository(env: Env) -> None:
    for name, args in [
        ("search_code", {"query": "FeatureStore"}),
        ("find_usages", {"symbol": "FeatureStore"}),
        ("read_file", {"path": "src/trading/features/store.py", "ref": "main"}),
        ("read_file", {"path": ""}),
        ("recent_changes", {"days": 7, "path": "src/trading"}),
    ]:
        text, is_error = await env.call(name, **args)
        assert not is_error, f"{name}: {text}"
    searches = [r for r in env.fake.requests if r.path.startswith("/search/")]
    assert {r.path for r in searches} == {"/search/code", "/search/issues"}
    assert all(r.query["q"].split().count("repo:acme/trading") == 1 for r in searches)
    assert all(
        not any(w.lower().startswith(("repo:", "org:", "user:")) for w in r.query["q"].split()[1:])
        for r in searches
        if r.path == "/search/issues"
    )
    others = [r for r in env.fake.requests if r not in searches]
    assert len(others) >= 5
    assert env.fake.requests_outside(INSIDE) == searches


async def test_read_file_of_a_one_line_megabyte_returns_the_capped_text(env: Env) -> None:
    text, is_error = await env.call("read_file", path="dist/app.min.js")
    assert not is_error, text
    assert "(The file is empty.)" not in text
    assert "1| var a=1;var a=1;" in text
    assert "Line 1 is 1,000,000 characters long; only its first" in text


async def test_read_file_over_one_megabyte_says_why_nothing_is_shown(env: Env) -> None:
    text, is_error = await env.call("read_file", path="data/huge.bin.json")
    assert is_error
    size = len(env.fake.files["acme/trading"]["data/huge.bin.json"])
    assert f"{size:,} bytes, over the 1 MB" in text and "none of its text could be read" in text


async def test_read_file_over_one_megabyte_as_a_403_too_large_says_so_too(env: Env) -> None:
    env.fake.too_large_as_403 = True
    text, is_error = await env.call("read_file", path="data/huge.bin.json")
    assert is_error
    assert "over the 1 MB" in text and "403 too_large" in text and "lacks permission" not in text


async def test_a_call_without_a_scope_cannot_send_anything(env: Env) -> None:
    with pytest.raises(RequestError) as err:
        await env.client.rest.orgs.async_list_members("other-org")
    assert isinstance(err.value.exc, ToolError)
    assert env.fake.requests == []


async def test_a_redirect_out_of_the_repository_is_not_followed(env: Env) -> None:
    env.fake.redirects["/repos/acme/trading/contents/README.md"] = "/orgs/other-org/members"
    env.fake.redirects["/repos/acme/trading"] = "/repos/other-org/x"
    text, is_error = await env.call("read_file", path="README.md")
    assert is_error and "Refused to send a GitHub request to /orgs/other-org/members" in text
    with pytest.raises(ToolError, match="outside acme/trading"):
        await env.client.repository("acme/trading")
    assert env.fake.requests_outside(INSIDE[:-1]) == []
    assert [r.path for r in env.fake.requests] == [
        "/repos/acme/trading/contents/README.md",
        "/repos/acme/trading",
    ]


def command_ctx(env: Env) -> CommandContext:
    msg = IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread="1.0",
        user="U1",
        user_name="U1",
        text="!repo",
        event_id="E1",
    )
    return CommandContext(
        env.store, env.ctx.settings, Secrets(), msg, env.ctx.thread, Services(github=env.client)
    )


@pytest.mark.parametrize(
    "arg",
    [
        "acme/trading/../../other-org/x",
        "acme/../other-org",
        "acme/..",
        "acme/%2e%2e",
        "acme\\trading",
        "https://github.com/acme/trading/../../other-org/x",
        "acme/trading?x=1",
    ],
)
async def test_repo_command_refuses_hostile_names_before_any_request(env: Env, arg: str) -> None:
    reply = await commands.run(command_ctx(env), f"!repo {arg}")
    assert "is not a repository" in reply
    assert env.store.channel_repo("slack/T1/C1") is None
    assert env.fake.requests == []
