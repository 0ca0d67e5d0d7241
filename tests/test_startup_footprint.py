"""What `archbot run` loads before it is ready: libraries only some set-ups use wait
for their first use, so start-up time and idle memory stay within SPEC 9's numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import clean_env

ROOT = Path(__file__).resolve().parents[1]

# Everything `archbot run` imports on its way to ready, with both adapters enabled.
RUN_IMPORTS = (
    "import bot.cli, bot.logs, bot.app, bot.toolset, adapters.runner, "
    "adapters.slack.adapter, adapters.discord.adapter"
)


def loaded_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running `code` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {name.split(".")[0] for name in out.stdout.split()}


def test_run_start_up_loads_neither_the_mcp_sdk_nor_githubkit() -> None:
    loaded = loaded_after(RUN_IMPORTS)
    assert {"anthropic", "slack_bolt", "discord"} <= loaded, "the check must see real imports"
    assert "mcp" not in loaded, "the MCP SDK loads when an extension first starts"
    assert not {"githubkit", "githubkit_schemas"} & loaded, "githubkit loads on the first request"


def test_the_libraries_load_when_first_used() -> None:
    # The lazy imports are real: using the client and the extensions module brings them in.
    loaded = loaded_after(
        "from bot.github import GitHubClient\n"
        "from bot.settings import Settings\n"
        "GitHubClient(Settings().github, None).rest\n"
        "from bot.tools import mcp\n"
        "mcp._describe(RuntimeError('x'), '')\n"
    )
    assert {"githubkit", "mcp"} <= loaded
