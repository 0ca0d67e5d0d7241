"""Extensions through MCP (SPEC section 10): names, schemas, sessions, allow-lists, results.

The servers are real MCP servers made with the `mcp` SDK (tests/fakes/mcp_server.py),
spoken to over stdio and over streamable HTTP on 127.0.0.1, and the reference
`mcp-server-git` on a repository the test creates.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.settings import McpServerSettings, Settings, load_settings
from bot.store import Store, ThreadRow
from bot.tools import Services, ToolContext
from bot.tools.mcp import (
    RESULT_MAX_CHARS,
    Extensions,
    ServerUnavailable,
    calls_per_server,
    clean_schema,
    offered_name,
)
from bot.toolset import tools
from tests.conftest import REPO_ROOT, make_secrets, make_settings, wait_until
from tests.fakes.mcp_server import http_server_process

SERVER = str(REPO_ROOT / "tests" / "fakes" / "mcp_server.py")
API_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BIN = Path(sys.executable).parent


def test_offered_names_follow_the_messages_api_rules() -> None:
    assert offered_name("git", "git_log") == "git__git_log"
    dotted = offered_name("grafana", "query.prometheus/range")
    assert API_NAME.match(dotted) and dotted.startswith("grafana__query_prometheus_range_")
    long = offered_name("metrics", "x" * 100)
    assert API_NAME.match(long) and len(long) <= 64
    # Two names that sanitise alike stay apart.
    assert offered_name("s", "a.b") != offered_name("s", "a/b")


def test_input_schemas_are_cleaned_to_object_schemas() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["q"],
        "properties": {"q": {"type": "string"}},
    }
    assert clean_schema(schema) == {
        "type": "object",
        "required": ["q"],
        "properties": {"q": {"type": "string"}},
    }
    assert clean_schema({"type": "object"}) == {"type": "object", "properties": {}}
    assert clean_schema({"type": "string"}) is None
    assert clean_schema({"type": "object", "properties": []}) is None
    assert clean_schema({"type": "object", "default": float("nan")}) is None
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(2000)}}
    assert clean_schema(huge) is None
    # Key order from the server does not change the bytes sent.
    a = clean_schema({"type": "object", "properties": {"b": {}, "a": {}}})
    b = clean_schema({"properties": {"a": {}, "b": {}}, "type": "object"})
    assert json.dumps(a) == json.dumps(b)


def test_server_settings_are_validated() -> None:
    McpServerSettings(name="git", command="mcp-server-git")
    McpServerSettings(name="http", url="https://mcp.example.com/mcp")
    for bad in (
        {"name": "x"},  # neither command nor url
        {"name": "x", "command": "a", "url": "https://h/mcp"},
        {"name": "has space", "command": "a"},
        {"name": "a__b", "command": "a"},  # the separator stays unambiguous
        {"name": "x", "url": "ftp://h/mcp"},
        {"name": "x", "url": "https://user:pw@h/mcp"},
        {"name": "x", "command": "a", "headers_env": {"Authorization": "TOKEN"}},
        {"name": "x", "command": "a", "env": ["A=B"]},
    ):
        with pytest.raises(ValidationError):
            McpServerSettings(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="used twice"):
        Settings(mcp_servers=[{"name": "g", "command": "a"}, {"name": "G", "command": "b"}])  # type: ignore[list-item]


def test_example_config_extensions_validate(tmp_path: Path) -> None:
    """The commented [[mcp_servers]] examples are valid once uncommented."""
    from bot.settings import EXAMPLE_CONFIG

    lines = EXAMPLE_CONFIG.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Extensions:"))
    body = [
        line[2:]
        for line in lines[start:]
        if (line.startswith("# ") and "=" in line) or line.startswith("# [[")
    ]
    path = tmp_path / "ext.toml"
    path.write_text("\n".join(body) + "\n")
    settings = load_settings(path)
    names = [s.name for s in settings.mcp_servers]
    assert names == ["git", "grafana", "sentry"]
    git = settings.mcp_servers[0]
    assert git.tool_allowed("git_log") and not git.tool_allowed("git_commit")


# --- against the test server -------------------------------------------------------------


def stdio_server(name: str = "t", **extra: Any) -> McpServerSettings:
    extra.setdefault("args", [SERVER])
    return McpServerSettings(name=name, command=sys.executable, **extra)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "a.db")
    try:
        yield opened
    finally:
        opened.close()


def thread_in(store: Store, channel: str) -> ThreadRow:
    return store.ensure_thread(
        f"slack/T1/{channel}/1.0",
        platform="slack",
        workspace="T1",
        channel=channel,
        thread="1.0",
        channel_key=f"slack:T1:{channel}",
    )


def tool_ctx(tmp_path: Path, store: Store, thread: ThreadRow, ext: Extensions) -> ToolContext:
    return ToolContext(
        store=store,
        settings=make_settings(tmp_path),
        secrets=make_secrets(None),
        thread=thread,
        user="U1",
        services=Services(extensions=ext),
    )


@pytest.fixture
async def stdio_ext(tmp_path: Path) -> AsyncIterator[Extensions]:
    """One stdio test server, shared by the checks of a test (start-ups are slow-ish)."""
    ext = Extensions(
        [
            stdio_server(
                args=[SERVER, "--calls-log", str(tmp_path / "calls.log")],
                env=["NAMED_VAR"],
                allowed_tools=["echo", "env_*", "pid", "crash", "slow", "fail", "big", "stats"],
                # Room for a loaded CI machine to start the child (~1 s when idle).
                timeout_seconds=5,
            )
        ],
        environ={
            "NAMED_VAR": "passed-through",
            "NOT_NAMED_SECRET": "must-not-reach-the-server",
            "HOME": "/home/someone",
            "PATH": os.environ["PATH"],
        },
    )
    try:
        yield ext
    finally:
        await ext.aclose()


def server_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().split() if log.exists() else []


async def test_stdio_server_tools_allow_list_env_results_and_restart(
    tmp_path: Path, store: Store, stdio_ext: Extensions
) -> None:
    thread = thread_in(store, "C1")
    ctx = tool_ctx(tmp_path, store, thread, stdio_ext)

    # A call outside the allowed set is refused before anything starts.
    text, is_error = await tools.call("t__delete_everything", {}, ctx)
    assert is_error and "not an allowed tool" in text
    assert stdio_ext.servers[0].starts == 0

    # Allowed tools only, sorted, after the registry's own, within the API's rules.
    defs = await tools.schemas_for(ctx)
    names = [d["name"] for d in defs]
    assert names[: len(tools.names())] == tools.names()
    ext_names = names[len(tools.names()) :]
    assert ext_names == sorted(ext_names)
    assert set(ext_names) == {
        "t__big", "t__crash", "t__echo", "t__env_names", "t__env_value",
        "t__fail", "t__pid", "t__slow", "t__stats",
    }  # fmt: skip
    assert "t__delete_everything" not in names
    for d in defs:
        assert API_NAME.match(d["name"]) and d["input_schema"]["type"] == "object"
    echo = next(d for d in defs if d["name"] == "t__echo")
    assert echo["description"] == "Echo the text back."
    assert echo["input_schema"]["properties"]["text"]["type"] == "string"

    # Byte-stable between turns: the same bytes, without listing the tools again.
    first = json.dumps(defs)
    assert json.dumps(await tools.schemas_for(ctx)) == first
    assert stdio_ext.servers[0].starts == 1

    text, is_error = await tools.call("t__echo", {"text": "hi"}, ctx)
    assert not is_error
    assert text == '<untrusted_content source="mcp:t/echo">\necho: hi\n</untrusted_content>'

    # Only the variables `env` names reach the process (not HOME, PATH or anything else).
    text, _ = await tools.call("t__env_names", {}, ctx)
    names_seen = set(text.split("\n")[1].split(","))
    assert "NAMED_VAR" in names_seen
    assert not names_seen & {"NOT_NAMED_SECRET", "HOME", "PATH", "USER", "SHELL"}
    # (Python itself may add LC_CTYPE when it coerces a C locale; nothing else appears.)
    assert names_seen <= {"NAMED_VAR", "LC_CTYPE"}
    text, _ = await tools.call("t__env_value", {"name": "NAMED_VAR"}, ctx)
    assert "passed-through" in text

    # Structured content, tool errors, caps and timeouts.
    text, is_error = await tools.call("t__stats", {}, ctx)
    assert not is_error and '"p99_ms": 84' in text
    text, is_error = await tools.call("t__fail", {}, ctx)
    assert is_error and "untrusted_content" in text
    text, is_error = await tools.call("t__big", {"chars": RESULT_MAX_CHARS * 2}, ctx)
    assert not is_error and len(text) < RESULT_MAX_CHARS + 500 and "[... cut:" in text
    text, is_error = await tools.call("t__slow", {"seconds": 8}, ctx)
    assert is_error and "timed out after 5 s" in text
    text, is_error = await tools.call("t__echo", "not an object", ctx)
    assert is_error and "expected an object" in text

    # A crash: an error now, a new process at the next call, and the same tool list.
    text, _ = await tools.call("t__pid", {}, ctx)
    pid_before = int(text.split("\n")[1])
    text, is_error = await tools.call("t__crash", {}, ctx)
    assert is_error and "restarted at the next call" in text
    assert stdio_ext.servers[0].state == "failed"
    text, is_error = await tools.call("t__pid", {}, ctx)
    assert not is_error
    assert int(text.split("\n")[1]) != pid_before
    assert stdio_ext.servers[0].starts == 2
    assert json.dumps(await tools.schemas_for(ctx)) == first

    # The refused tool never reached the server; the ledger counts calls per server.
    assert "delete_everything" not in server_calls(tmp_path)
    calls, errors = calls_per_server(store, thread.channel_key, "2000-01-01")["t"]
    assert (calls, errors) == (10, 3)  # refusals and bad input never reach a server


async def test_tools_only_in_the_listed_channels(tmp_path: Path, store: Store) -> None:
    ext = Extensions([stdio_server(allowed_tools=["echo"], channels=["C_OPS"])])
    try:
        elsewhere = tool_ctx(tmp_path, store, thread_in(store, "C_OTHER"), ext)
        assert await tools.schemas_for(elsewhere) == tools.schemas()
        text, is_error = await tools.call("t__echo", {"text": "x"}, elsewhere)
        assert is_error and "not an allowed tool" in text
        assert ext.servers[0].starts == 0  # nothing started for a channel without extensions
        ops = tool_ctx(tmp_path, store, thread_in(store, "C_OPS"), ext)
        names = [d["name"] for d in await tools.schemas_for(ops)]
        assert names[-1] == "t__echo" and "t__pid" not in names
        text, is_error = await tools.call("t__echo", {"text": "x"}, ops)
        assert not is_error and "echo: x" in text
    finally:
        await ext.aclose()


async def test_a_server_that_cannot_start_costs_only_its_own_tools(
    tmp_path: Path, store: Store
) -> None:
    ext = Extensions(
        [
            stdio_server("broken", args=[SERVER, "--exit-at-once"]),
            McpServerSettings(name="missing", command="no-such-mcp-server-here"),
            stdio_server("good", allowed_tools=["echo"]),
        ]
    )
    try:
        ctx = tool_ctx(tmp_path, store, thread_in(store, "C1"), ext)
        names = [d["name"] for d in await tools.schemas_for(ctx)]
        assert [n for n in names if "__" in n] == ["good__echo"]
        broken, missing, _ = ext.servers
        assert broken.state == "failed" and "exited" in (broken.error or "")
        assert "not found" in (missing.error or "")
        text, is_error = await tools.call("good__echo", {"text": "still here"}, ctx)
        assert not is_error and "still here" in text
        # Backoff: after a second failure the next attempt waits.
        await tools.schemas_for(ctx)
        with pytest.raises(ServerUnavailable, match="next start attempt in"):
            await broken.ensure_started()
    finally:
        await ext.aclose()


@pytest.fixture
def http_server() -> Iterator[str]:
    """The test server over streamable HTTP on 127.0.0.1, behind a bearer token."""
    with http_server_process("Bearer test-token-not-real") as url:
        yield url


async def test_streamable_http_server_with_headers_from_env(
    tmp_path: Path, store: Store, http_server: str
) -> None:
    def server(var: str) -> McpServerSettings:
        return McpServerSettings(
            name="web",
            url=http_server,
            headers_env={"Authorization": var},
            allowed_tools=["echo", "stats"],
        )

    environ = {"WEB_MCP_AUTH": "Bearer test-token-not-real", "WRONG": "Bearer wrong-token"}
    ext = Extensions([server("WEB_MCP_AUTH")], environ)
    try:
        ctx = tool_ctx(tmp_path, store, thread_in(store, "C1"), ext)
        names = [d["name"] for d in await tools.schemas_for(ctx)]
        assert names[-2:] == ["web__echo", "web__stats"]
        text, is_error = await tools.call("web__echo", {"text": "over http"}, ctx)
        assert not is_error and "echo: over http" in text
    finally:
        await ext.aclose()

    for var, problem in (("WRONG", "(HTTP 401)"), ("UNSET_VAR", "$UNSET_VAR is not set")):
        ext = Extensions([server(var)], environ)
        try:
            with pytest.raises(ServerUnavailable, match=re.escape(problem)) as caught:
                await ext.servers[0].ensure_started()
            assert "wrong-token" not in str(caught.value)
        finally:
            await ext.aclose()


def make_repo(path: Path) -> Path:
    """A git repository with one commit."""
    path.mkdir()
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "dev@example.com"],
        ["config", "user.name", "Dev"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, env=env)
    (path / "router.py").write_text("P99_BUDGET_MS = 100\n")
    subprocess.run(["git", "add", "router.py"], cwd=path, check=True, env=env)
    subprocess.run(
        ["git", "commit", "-q", "-m", "Add the order router with a 100 ms budget"],
        cwd=path,
        check=True,
        env=env,
    )
    return path


def commit_count(repo: Path) -> int:
    out = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    )
    return int(out.stdout)


async def test_the_reference_git_server_reads_a_local_clone(tmp_path: Path, store: Store) -> None:
    repo = make_repo(tmp_path / "repo")
    ext = Extensions(
        [
            McpServerSettings(
                name="git",
                command=str(BIN / "mcp-server-git"),
                args=["--repository", str(repo)],
                allowed_tools=["git_log", "git_show", "git_status"],
            )
        ]
    )
    try:
        ctx = tool_ctx(tmp_path, store, thread_in(store, "C1"), ext)
        names = [d["name"] for d in await tools.schemas_for(ctx)]
        assert [n for n in names if n.startswith("git__")] == [
            "git__git_log",
            "git__git_show",
            "git__git_status",
        ]
        assert "git_commit" in ext.servers[0].listed
        text, is_error = await tools.call(
            "git__git_log", {"repo_path": str(repo), "max_count": 1}, ctx
        )
        assert not is_error, text
        assert text.startswith('<untrusted_content source="mcp:git/git_log">')
        assert "Add the order router with a 100 ms budget" in text
        text, is_error = await tools.call(
            "git__git_commit", {"repo_path": str(repo), "message": "sneaky"}, ctx
        )
        assert is_error and "not an allowed tool" in text
        assert commit_count(repo) == 1
    finally:
        await ext.aclose()


async def test_core_aclose_stops_the_server_processes(tmp_path: Path) -> None:
    from bot.app import build_core

    settings = make_settings(
        tmp_path, mcp_servers=[{"name": "t", "command": sys.executable, "args": [SERVER]}]
    )
    core = build_core(settings, make_secrets(None))
    assert core.extensions is not None
    thread = thread_in(core.store, "C1")
    ctx = ToolContext(core.store, settings, core.secrets, thread, "U1", core.services)
    assert core.extensions.servers[0].starts == 0  # lazily: nothing runs until first use
    await tools.schemas_for(ctx)  # a turn's first step starts the channel's servers
    text, _ = await tools.call("t__pid", {}, ctx)
    pid = int(text.split("\n")[1])
    os.kill(pid, 0)  # running
    await core.aclose()
    wait_until(lambda: not _alive(pid), "the server process to exit", within=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of the (exited) child still answers kill(0): look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
