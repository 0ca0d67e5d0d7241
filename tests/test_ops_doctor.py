"""`archbot doctor` checks the model with the call every turn makes (a one-token request), so a
gateway that answers the model lookup while chats fail is a FAIL; and it creates no database."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FAKE_KEY, run_cli
from tests.fakes.fake_anthropic import FakeAnthropic


def env(fake: FakeAnthropic, db: Path) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": fake.url,  # type: ignore[attr-defined]
        "ANTHROPIC_API_KEY": FAKE_KEY,
        "ARCHBOT_STORAGE__PATH": str(db),
    }


def test_doctor_sends_a_one_token_request_and_fails_when_chats_fail(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    db = tmp_path / "data" / "archbot.db"
    ok = run_cli(["doctor"], cwd=tmp_path, env=env(fake_anthropic, db))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok   model:" in ok.stdout and "one-token request" in ok.stdout
    [ping] = fake_anthropic.message_requests
    assert ping.body["max_tokens"] == 1
    # The model lookup still answers (as a gateway's would); the chat call does not.
    fake_anthropic.reply_error(400, "invalid_request_error", "model not served here")
    bad = run_cli(["doctor"], cwd=tmp_path, env=env(fake_anthropic, db))
    assert bad.returncode == 1
    assert any(line.startswith("FAIL model:") for line in bad.stdout.splitlines()), bad.stdout


def test_doctor_creates_no_database(tmp_path: Path, fake_anthropic: FakeAnthropic) -> None:
    db = tmp_path / "data" / "archbot.db"
    done = run_cli(["doctor"], cwd=tmp_path, env=env(fake_anthropic, db))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok   database: {db} does not exist yet" in done.stdout
    assert not db.exists() and not db.parent.exists()
