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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Every first-party module and the first-party modules it imports (type-only imports too)."""
    paths = sorted([*(REPO_ROOT / "bot").rglob("*.py"), *(REPO_ROOT / "adapters").rglob("*.py")])
    modules = {_module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_modules(path):
            # `from bot.tools import x` names a module or a package: take the longest known prefix.
            parts = imported.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                targets.add(".".join(parts))
        graph[name] = targets
    return graph


def test_no_import_cycles_between_first_party_modules() -> None:
    graph = _import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package importing its own submodules is how it registers them, not a circle.
    real = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert real == [], " | ".join(" -> ".join(c) for c in real)
