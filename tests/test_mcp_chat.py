"""Acceptance for extensions, as a new user tries them: `archbot chat` with the scripted
model and `archbot doctor`, with mcp-server-git on a local repository, mcp-server-time,
a streamable-HTTP server on 127.0.0.1 and a server whose command exits at once."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chat_helpers import chat, tool_result
from tests.conftest import REPO_ROOT, run_cli
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.mcp_server import http_server_process
from tests.test_mcp import commit_count, make_repo

SERVER = REPO_ROOT / "tests" / "fakes" / "mcp_server.py"
BIN = Path(sys.executable).parent
TOKEN = "Bearer acceptance-token-not-real"


@pytest.fixture
def http_url() -> Iterator[str]:
    with http_server_process(TOKEN) as url:
        yield url


def write_config(tmp_path: Path, repo: Path, http_url: str) -> Path:
    config = tmp_path / "archbot.toml"
    py = json.dumps(sys.executable)
    config.write_text(
        f"""
[[mcp_servers]]
name = "git"
command = {json.dumps(str(BIN / "mcp-server-git"))}
args = ["--repository", {json.dumps(str(repo))}]
allowed_tools = ["git_log", "git_show", "git_status"]

[[mcp_servers]]
name = "time"
command = {py}
args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]

[[mcp_servers]]
name = "web"
url = "{http_url}"
headers_env = {{ Authorization = "WEB_MCP_AUTH" }}
allowed_tools = ["echo"]

[[mcp_servers]]
name = "broken"
command = {py}
args = [{json.dumps(str(SERVER))}, "--exit-at-once"]
"""
    )
    return config


def test_extensions_through_archbot_chat_and_doctor(tmp_path: Path, http_url: str) -> None:
    repo = make_repo(tmp_path / "repo")
    config = write_config(tmp_path, repo, http_url)
    env = {"ARCHBOT_CONFIG": str(config), "WEB_MCP_AUTH": TOKEN}
    model = FakeAnthropic()
    server = ServerThread(model.app()).start()
    try:
        model.reply_tool_use("git__git_log", {"repo_path": str(repo), "max_count": 1})
        model.reply_tool_use("time__get_current_time", {"timezone": "UTC"})
        model.reply_tool_use("web__echo", {"text": "from the HTTP server"})
        model.reply_tool_use("git__git_commit", {"repo_path": str(repo), "message": "oops"})
        model.reply_text("Your last commit adds the order router.")
        done = chat("What changed last?", cwd=tmp_path, anthropic_url=server.url, env=env)
        assert done.returncode == 0, done.stderr
        assert "Your last commit adds the order router." in done.stdout

        requests = model.message_requests
        assert len(requests) == 5
        offered = [t["name"] for t in requests[0].body["tools"]]
        assert {"git__git_log", "time__get_current_time", "web__echo"} <= set(offered)
        assert "git__git_commit" not in offered
        assert not [n for n in offered if n.startswith("broken__")]
        # The tool list is the same bytes in every request of the turn (the cached prefix).
        assert len({json.dumps(r.body["tools"]) for r in requests}) == 1

        text, is_error = tool_result(requests[1])
        assert not is_error
        assert text.startswith('<untrusted_content source="mcp:git/git_log">')
        assert "Add the order router with a 100 ms budget" in text
        text, is_error = tool_result(requests[2])
        assert not is_error and '"timezone": "UTC"' in text
        text, is_error = tool_result(requests[3])
        assert not is_error and "echo: from the HTTP server" in text
        text, is_error = tool_result(requests[4])
        assert is_error and "git__git_commit is not an allowed tool here" in text
        assert commit_count(repo) == 1

        # The usage ledger counts tool calls per server.
        with sqlite3.connect(tmp_path / "a.db") as db:
            per_server = dict(
                db.execute("SELECT server, count(*) FROM extension_calls GROUP BY server")
            )
        assert per_server == {"git": 1, "time": 1, "web": 1}

        listing = chat("!extensions", cwd=tmp_path, anthropic_url=server.url, env=env)
        assert listing.returncode == 0, listing.stderr
        out = listing.stdout
        for line in ("**git**", "**time**", "**web**", "**broken**", "`git__git_log`"):
            assert line in out, out
        assert "`time__get_current_time`" in out and "`web__echo`" in out
        assert "git__git_commit" not in out
        assert "failed: could not start" in out

        doctor = run_cli(
            ["doctor"],
            cwd=tmp_path,
            env={
                **env,
                "ANTHROPIC_BASE_URL": server.url,
                "ANTHROPIC_API_KEY": "sk-ant-test-not-real",
                "ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db"),
            },
        )
    finally:
        server.stop()
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    lines = doctor.stdout.splitlines()
    assert any(line.startswith("FAIL mcp broken:") for line in lines), doctor.stdout
    assert any(line.startswith("ok   mcp git: 12 tools, 3 allowed") for line in lines), lines
    assert any(line.startswith("ok   mcp web:") for line in lines), lines
    assert TOKEN not in doctor.stdout + doctor.stderr
