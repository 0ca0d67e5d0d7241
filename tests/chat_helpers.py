"""Run `archbot chat` as a subprocess against loopback fakes (shared by the GitHub, web and
delegation acceptance tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import run_cli
from tests.fakes.fake_anthropic import RecordedRequest


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
    full = {
        "ANTHROPIC_BASE_URL": anthropic_url,
        "ANTHROPIC_API_KEY": "sk-ant-test-not-real",
        "ARCHBOT_STORAGE__PATH": str(cwd / "a.db"),
        **(env or {}),
    }
    return run_cli(["chat", "--thread", thread], cwd=cwd, stdin=text, env=full, timeout=timeout)


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
