"""Shared fixtures: a scripted fake Anthropic API on loopback, settings on a temp
database, a core wired like production, and a CLI runner for subprocess tests."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from bot.app import Core, build_core
from bot.settings import Secrets, Settings
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_slack import FakeSlack

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
FAKE_KEY = "sk-ant-test-not-a-real-key"

# Nothing from the developer's shell may leak into tests (keys, config, base URLs).
OWN_ENV_PREFIXES = ("ARCHBOT_", "ANTHROPIC_", "SLACK_", "DISCORD_", "GITHUB_")
for _name in list(os.environ):
    if _name.startswith(OWN_ENV_PREFIXES):
        del os.environ[_name]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for an archbot subprocess: no config or secrets from the shell, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_ENV_PREFIXES)}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


# A port from bind(("127.0.0.1", 0)) is free only until someone else binds it, and the kernel
# hands that same ephemeral range to every fake server (port 0) and outgoing connection of
# every xdist worker. A port that a subprocess binds seconds later must come from where the
# kernel never looks, and where no other worker of this run looks either: a block of its own.
PORT_BLOCK_START, PORT_BLOCK_SIZE = 10000, 400


def _port_block() -> range:
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    slots = max(1, (ephemeral - PORT_BLOCK_START) // PORT_BLOCK_SIZE)
    first = PORT_BLOCK_START + (int(worker) if worker.isdigit() else 0) % slots * PORT_BLOCK_SIZE
    return range(first, first + PORT_BLOCK_SIZE)


_PORTS = _port_block()
# A random start: two runs on one machine (two worktrees) seldom walk the same ports in step.
_next_port = itertools.count(random.randrange(len(_PORTS)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and no other test process hands out."""
    for _ in range(len(_PORTS)):
        port = _PORTS[next(_next_port) % len(_PORTS)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken, or in TIME_WAIT: the next one
            return port
    raise RuntimeError(f"no free port in {_PORTS}")


def wait_until(
    check: Callable[[], T],
    what: str = "condition",
    *,
    within: float = 60.0,
    proc: subprocess.Popen[str] | None = None,
) -> T:
    """Poll `check` until it returns something truthy; fail after `within` s or if `proc` died."""
    # Generous: a passing test never waits for it, and a subprocess's start-up (seconds of
    # imports) shares two cores with the other test workers and their subprocesses.
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"archbot exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def eventually(check: Callable[[], T], what: str = "condition", *, within: float = 30.0) -> T:
    """Poll `check` on the event loop until it returns something truthy; fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A scripted Messages API on 127.0.0.1; `.url` is its base URL."""
    fake = FakeAnthropic()
    server = ServerThread(fake.app()).start()
    fake.url = server.url  # type: ignore[attr-defined]
    try:
        yield fake
    finally:
        server.stop()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API on 127.0.0.1; `.url` is its base (the API is under /api/)."""
    fake = FakeSlack()
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    try:
        yield fake
    finally:
        server.stop()


@pytest.fixture(name="bot")
async def slack_bot(
    tmp_path: Path, fake_anthropic: FakeAnthropic, fake_slack: FakeSlack
) -> AsyncIterator[object]:
    """`archbot run` in-process with Slack over HTTP, against the fakes; it must stop with exit
    code 0 (a module with another `bot`, such as Discord's, defines its own)."""
    # Imported here: that module imports this one.
    from tests.test_slack_adapter import RunningBot, slack_secrets, slack_settings

    running = await RunningBot(
        slack_settings(tmp_path, fake_slack), slack_secrets(fake_anthropic), fake_slack
    ).start()
    try:
        yield running
    finally:
        assert await running.stop() == 0


@pytest.fixture
def fake_discord() -> Iterator[FakeDiscord]:
    """A fake Discord REST API and gateway on 127.0.0.1; `.url` is the REST base (…/api/v10)."""
    fake = FakeDiscord()
    server = ServerThread(fake.app()).start()
    fake.url = f"{server.url}/api/v10"
    try:
        yield fake
    finally:
        server.stop()


def make_settings(tmp_path: Path, **sections: dict[str, object]) -> Settings:
    """Settings on a temp database, with section overrides like llm={"max_tool_rounds": 2}."""
    data: dict[str, object] = {"storage": {"path": str(tmp_path / "archbot.db")}}
    data.update(sections)
    return Settings(**data)  # type: ignore[arg-type]


def make_secrets(fake: FakeAnthropic | None, *, key: str | None = FAKE_KEY) -> Secrets:
    """Secrets pointing the SDK at the fake (or nowhere, for offline mode)."""
    values: dict[str, object] = {}
    if key:
        values["ANTHROPIC_API_KEY"] = key
    if fake is not None:
        values["ANTHROPIC_BASE_URL"] = fake.url  # type: ignore[attr-defined]
    return Secrets(**values)  # type: ignore[arg-type]


@pytest.fixture
async def core(tmp_path: Path, fake_anthropic: FakeAnthropic) -> AsyncIterator[Core]:
    """A production-wired core talking to the fake model."""
    built = build_core(make_settings(tmp_path), make_secrets(fake_anthropic))
    try:
        yield built
    finally:
        await built.aclose()


def run_cli(
    args: list[str],
    *,
    cwd: Path,
    stdin: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot ARGS` in a clean environment (plus `env`) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        timeout=timeout,
        check=False,
    )
