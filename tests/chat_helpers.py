"""Run `archbot chat` as a subprocess against loopback fakes (shared by the GitHub, web and
delegation acceptance tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fakes.fake_anthropic import RecordedRequest

SECRET_PREFIXES = ("ARCHBOT_", "ANTHROPIC_", "GITHUB_", "SLACK_", "DISCORD_")


def chat(
    text: str,
    *,
    cwd: Path,
    anthropic_url: str,
    env: dict[str, str] | None = None,
    thread: str = "t1",
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Pipe one message into `archbot chat` and return the finished process."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
    full.update(
        ANTHROPIC_BASE_URL=anthropic_url,
        ANTHROPIC_API_KEY="sk-ant-test-not-real",
        ARCHBOT_STORAGE__PATH=str(cwd / "a.db"),
    )
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--thread", thread],
        input=text,
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def tool_result(request: RecordedRequest) -> tuple[str, bool]:
    """The tool_result carried by a model request's last (user) message: (content, is_error)."""
    last = request.body["messages"][-1]
    assert last["role"] == "user"
    blocks = [b for b in last["content"] if b.get("type") == "tool_result"]
    assert blocks, f"no tool_result in {last}"
    block: dict[str, Any] = blocks[-1]
    content = block["content"]
    if isinstance(content, list):
        content = "\n".join(c.get("text", "") for c in content)
    return str(content), bool(block.get("is_error"))
