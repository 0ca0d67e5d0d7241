"""The deploy files, checked by parsing since Docker cannot run here: the image installs from
the same lock file as the README, runs `archbot run` as a non-root user with the database on a
volume, has a HEALTHCHECK; compose.yaml keeps secrets out of the file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuations joined, comments out."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile_installs_from_the_readme_lock_and_runs_as_non_root() -> None:
    steps = instructions(ROOT / "Dockerfile")
    words = [word for word, _ in steps]
    assert re.fullmatch(r"python:3\.1[1-3]-slim", steps[0][1]), steps[0]
    readme_install = re.search(r"pip install -q -r (\S+) -e \.", (ROOT / "README.md").read_text())
    assert readme_install is not None
    lock = readme_install.group(1)
    assert lock == "requirements.lock"
    runs = [rest for word, rest in steps if word == "RUN"]
    assert any(re.search(rf"pip install (.* )?-r {re.escape(lock)}(\s|$)", run) for run in runs), (
        runs
    )
    assert any(word == "COPY" and rest.split()[0] == lock for word, rest in steps)
    # The last USER before CMD is a named, non-root user and no RUN follows it as root.
    users = [i for i, word in enumerate(words) if word == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = steps[users[-1]][1].split(":")[0]
    assert user not in {"root", "0"}
    assert "USER" not in words[users[-1] + 1 :]
    [cmd] = [rest for word, rest in steps if word == "CMD"]
    assert cmd == '["archbot", "run"]'
    volumes = " ".join(rest for word, rest in steps if word == "VOLUME")
    env = " ".join(rest for word, rest in steps if word == "ENV")
    db = re.search(r"ARCHBOT_STORAGE__PATH=(\S+)", env)
    assert db is not None and f'"{Path(db.group(1)).parent}"' in volumes
    [health] = [rest for word, rest in steps if word == "HEALTHCHECK"]
    port = re.search(r"ARCHBOT_METRICS__PORT=(\d+)", env)
    assert port is not None and f":{port.group(1)}/metrics" in health


def test_dockerignore_keeps_databases_and_venvs_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "*.db"} <= set(ignored)


def test_compose_passes_secrets_through_without_values() -> None:
    text = (ROOT / "compose.yaml").read_text()
    for name in ("SLACK_BOT_TOKEN", "ANTHROPIC_API_KEY", "DISCORD_TOKEN", "GITHUB_TOKEN"):
        assert re.search(rf"^\s+- {name}$", text, re.M), name
    assert re.search(r"^\s+- archbot-data:/data$", text, re.M)
    for line in text.splitlines():
        tokens = shlex.split(line, comments=True)
        assert not any(re.match(r"(xox[bap]-|sk-ant-|ghp_)", t) for t in tokens), line
