"""Acceptance through the CLI: a token with a trailing CR (a CRLF .env file) is stripped, works,
and no part of it is printed, at any log level."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chat_helpers import tool_result
from tests.conftest import clean_env, free_port, run_cli, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_github import FakeGitHub, trading_repo
from tests.fakes.fake_slack import FakeSlack, event_body, event_request

GITHUB_TOKEN = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa98"
ANTHROPIC_KEY = "sk-ant-api03-" + "Qm7fTz2LwX9pRb4NcV8sKd1HgJ6yUe3A" * 2
SLACK_BOT_TOKEN = "xoxb-4815162342-1087108710871-Xq2Wm9Lp4Rt7Zv1Nb6Kc3Hd8"
SLACK_APP_TOKEN = "xapp-1-A0B1C2D3E4F-5566778899001-" + "9f8e7d6c5b4a3f2e1d0c" * 2
SLACK_SIGNING_SECRET = "8f14e45fceea167a5a36dedd4bea2543"
DISCORD_TOKEN = "MTA4NzEwODcxMDg3MTA4NzEwOA.GqX7pL.Vb3nK9sW2mQ8rT4yU6iO1pA5dF7gH0jZxCvBnMlK"
ALL = (GITHUB_TOKEN, ANTHROPIC_KEY, SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_SIGNING_SECRET)


def leaks(text: str, secret: str) -> bool:
    """True when any 10-character stretch past the secret's kind prefix is in `text`."""
    body = secret[5:]
    return any(body[i : i + 10] in text for i in range(len(body) - 9))


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, str]]:
    fake = trading_repo(FakeGitHub())
    server = ServerThread(fake.app()).start()
    try:
        yield fake, server.url
    finally:
        server.stop()


@pytest.mark.parametrize("level", ["info", "debug"])
def test_doctor_with_a_crlf_github_token_prints_no_part_of_it(
    tmp_path: Path, github: tuple[FakeGitHub, str], level: str
) -> None:
    fake, url = github
    env = {
        "GITHUB_TOKEN": GITHUB_TOKEN + "\r",
        "ARCHBOT_GITHUB__API_URL": url,
        "ARCHBOT_GITHUB__DEFAULT_REPO": "acme/trading",
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db"),
        "ARCHBOT_LOG__LEVEL": level,
    }
    done = run_cli(["doctor"], cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    assert not leaks(output, GITHUB_TOKEN), output
    assert "Illegal header" not in output and "Traceback" not in output
    # Stripped, the token works: the request carried it without the CR.
    assert done.returncode == 0, output
    assert "ok   github: acme/trading reachable" in done.stdout
    sent = [r.headers.get("Authorization", "") for r in fake.requests]
    assert sent and all(h.endswith(GITHUB_TOKEN) for h in sent)


def test_doctor_with_a_token_broken_inside_names_it_and_prints_no_part_of_it(
    tmp_path: Path, github: tuple[FakeGitHub, str]
) -> None:
    _, url = github
    broken = GITHUB_TOKEN[:20] + "\r" + GITHUB_TOKEN[20:]
    env = {
        "GITHUB_TOKEN": broken,
        "ARCHBOT_GITHUB__API_URL": url,
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db"),
        "ARCHBOT_LOG__LEVEL": "debug",
    }
    done = run_cli(["doctor"], cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "GITHUB_TOKEN" in done.stderr and "line break" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not leaks(done.stdout + done.stderr, GITHUB_TOKEN)


def test_every_secret_with_crlf_is_stripped_and_works(
    tmp_path: Path,
    github: tuple[FakeGitHub, str],
    fake_slack: FakeSlack,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
) -> None:
    gh, gh_url = github
    fake_discord.valid_token = DISCORD_TOKEN
    env = {
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY + "\r\n",
        "ANTHROPIC_BASE_URL": fake_anthropic.url + "\r\n",  # type: ignore[attr-defined]
        "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN + "\r\n",
        "SLACK_APP_TOKEN": SLACK_APP_TOKEN + "\r\n",
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET + "\r\n",
        "DISCORD_TOKEN": DISCORD_TOKEN + "\r\n",
        "GITHUB_TOKEN": GITHUB_TOKEN + "\r\n",
        "ARCHBOT_SLACK__ENABLED": "true",
        "ARCHBOT_SLACK__API_URL": f"{fake_slack.url}/api/",
        "ARCHBOT_DISCORD__ENABLED": "true",
        "ARCHBOT_DISCORD__API_URL": fake_discord.url,  # type: ignore[attr-defined]
        "ARCHBOT_GITHUB__API_URL": gh_url,
        "ARCHBOT_GITHUB__DEFAULT_REPO": "acme/trading",
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db"),
        "ARCHBOT_LOG__LEVEL": "debug",
    }
    done = run_cli(["doctor"], cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for check in ("model", "slack", "discord", "github"):
        assert f"ok   {check}:" in done.stdout, output
    for secret in (*ALL, DISCORD_TOKEN):
        assert not leaks(output, secret), secret
    # The fake Discord accepts only `Bot <token>` exactly, so the ok line proves the header.
    assert [c.headers["Authorization"] for c in fake_slack.calls_of("auth.test")] == [
        f"Bearer {SLACK_BOT_TOKEN}"
    ]
    assert {r.headers.get("Authorization") for r in gh.requests} == {f"token {GITHUB_TOKEN}"}

    # The model key: one turn through `archbot chat`, and the header the SDK sent.
    fake_anthropic.reply_text("Use Parquet.")
    chat = run_cli(["chat"], cwd=tmp_path, stdin="Where do we keep ticks?", env=env)
    assert chat.returncode == 0, chat.stderr
    assert "Use Parquet." in chat.stdout
    sent = fake_anthropic.message_requests[-1].headers
    assert ANTHROPIC_KEY in {sent.get("X-Api-Key"), sent.get("Authorization", "")[7:]}
    for secret in (*ALL, DISCORD_TOKEN):
        assert not leaks(chat.stdout + chat.stderr, secret), secret


def test_a_tool_call_with_a_crlf_token_works_and_leaves_no_trace(
    tmp_path: Path, github: tuple[FakeGitHub, str], fake_anthropic: FakeAnthropic
) -> None:
    gh, url = github
    fake_anthropic.reply_tool_use("read_file", {"path": "src/trading/features/store.py"})
    fake_anthropic.reply_text("It is in store.py.")
    env = {
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY + "\r",
        "ANTHROPIC_BASE_URL": fake_anthropic.url,  # type: ignore[attr-defined]
        "GITHUB_TOKEN": GITHUB_TOKEN + "\r",
        "ARCHBOT_GITHUB__API_URL": url,
        "ARCHBOT_GITHUB__DEFAULT_REPO": "acme/trading",
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db"),
        "ARCHBOT_LOG__LEVEL": "debug",
    }
    done = run_cli(["chat"], cwd=tmp_path, stdin="Where is the feature store?", env=env)
    assert done.returncode == 0, done.stderr
    assert "It is in store.py." in done.stdout
    text, is_error = tool_result(fake_anthropic.message_requests[-1])
    assert not is_error and "class FeatureStore" in text
    assert {r.headers.get("Authorization") for r in gh.requests} == {f"token {GITHUB_TOKEN}"}
    stored = (tmp_path / "a.db").read_bytes()
    for secret in (GITHUB_TOKEN, ANTHROPIC_KEY):
        assert not leaks(done.stdout + done.stderr, secret)
        assert secret[5:25].encode() not in stored


def _run(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp_path,
            env=clean_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return proc, log_path


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_run_with_a_crlf_signing_secret_verifies_signed_events(
    tmp_path: Path, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    port = free_port()
    env = {
        "ARCHBOT_SLACK__ENABLED": "true",
        "ARCHBOT_SLACK__MODE": "http",
        "ARCHBOT_SLACK__PORT": str(port),
        "ARCHBOT_SLACK__API_URL": f"{fake_slack.url}/api/",
        "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN + "\r\n",
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET + "\r\n",
        "ANTHROPIC_BASE_URL": fake_anthropic.url,  # type: ignore[attr-defined]
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY + "\r\n",
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db"),
        "ARCHBOT_LOG__LEVEL": "debug",
    }
    proc, log_path = _run(tmp_path, env)
    try:
        wait_until(lambda: _listening(port), what="archbot to listen", proc=proc)
        fake_anthropic.reply_text("Partition by day.")
        body = event_body("app_mention")
        # Signed with the secret as Slack knows it: without the CR.
        raw, headers = event_request(body, SLACK_SIGNING_SECRET)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/slack/events", data=raw, headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        channel, ts = body["event"]["channel"], body["event"]["ts"]
        [reply] = wait_until(
            lambda: fake_slack.thread_messages(channel, ts), what="the answer", proc=proc
        )
        assert "Partition by day." in reply.text
    finally:
        code = _stop(proc)
    log = log_path.read_text()
    assert code == 0, log
    for secret in (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, ANTHROPIC_KEY):
        assert not leaks(log, secret), secret
    assert {c.headers.get("Authorization") for c in fake_slack.calls} == {
        f"Bearer {SLACK_BOT_TOKEN}"
    }


def test_run_with_a_crlf_app_token_opens_the_socket_with_it(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    env = {
        "ARCHBOT_SLACK__ENABLED": "true",
        "ARCHBOT_SLACK__API_URL": f"{fake_slack.url}/api/",
        "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN + "\r\n",
        "SLACK_APP_TOKEN": SLACK_APP_TOKEN + "\r\n",
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db"),
        "ARCHBOT_LOG__LEVEL": "debug",
    }
    proc, log_path = _run(tmp_path, env)
    try:
        [opened] = wait_until(
            lambda: fake_slack.calls_of("apps.connections.open")[:1],
            what="apps.connections.open",
            proc=proc,
        )
    finally:
        code = _stop(proc)
    log = log_path.read_text()
    assert code == 0, log
    assert opened.headers.get("Authorization") == f"Bearer {SLACK_APP_TOKEN}"
    for secret in (SLACK_BOT_TOKEN, SLACK_APP_TOKEN):
        assert not leaks(log, secret), secret
