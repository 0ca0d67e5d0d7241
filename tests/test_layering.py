"""The core never imports a platform library (SPEC section 1)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

FORBIDDEN = ("slack_bolt", "slack_sdk", "discord")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_in_bot_imports_a_platform_library() -> None:
    offenders = []
    for path in sorted((REPO_ROOT / "bot").rglob("*.py")):
        for name in imported_modules(path):
            root = name.split(".")[0]
            if root in FORBIDDEN:
                offenders.append(f"{path.name}: {name}")
            # Only the CLI reaches adapters, lazily, to start them.
            if root == "adapters" and path.name != "cli.py":
                offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_importing_the_core_loads_no_platform_library() -> None:
    code = (
        "import sys, bot.app, bot.cli, bot.consultant, bot.toolset\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
