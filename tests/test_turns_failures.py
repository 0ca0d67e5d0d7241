"""No turn is silent, stuck or doubled: failures other than the model's end the turn with a
reply that points at the log line, and recovery at start survives one broken turn."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

import pytest

from bot.app import build_core
from bot.signoff import SIGN_OFF, ends_with_sign_off_once
from bot.store import Store, utcnow
from tests.conftest import make_secrets, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg, texts

REF = re.compile(r"err-[0-9a-f]{8}")


def raw_db(tmp_path: Path) -> sqlite3.Connection:
    """A second connection to the bot's database, as another process or a disk fault would be."""
    return sqlite3.connect(tmp_path / "archbot.db", isolation_level=None)


async def test_a_store_error_mid_turn_ends_it_with_a_reply_naming_it(
    tmp_path: Path, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    core = build_core(make_settings(tmp_path), make_secrets(fake_anthropic))
    db = raw_db(tmp_path)
    try:
        # The usage ledger is written after the model answered: that write fails.
        db.execute("ALTER TABLE usage RENAME TO usage_elsewhere")
        fake_anthropic.reply_text("Use Parquet partitioned by day.")
        with caplog.at_level(logging.ERROR, logger="bot.consultant"):
            reply = await core.consultant.handle(msg("Where do we keep raw ticks?", thread="db"))
        assert reply is not None and reply.kind == "error"
        assert "database error (OperationalError)" in reply.text
        assert ends_with_sign_off_once(reply.text)
        ref = REF.search(reply.text)
        assert ref is not None, reply.text
        logged = [r for r in caplog.records if ref.group() in r.getMessage()]
        assert logged and logged[0].exc_info is not None  # the traceback is under that reference

        turn = core.store.get_turn(reply.turn_id or 0)
        assert turn.status == "failed" and turn.reply == reply.text
        assert core.store.pending_turns(created_before=utcnow()) == []

        # The thread goes on: the next message is answered and still sees the question.
        db.execute("ALTER TABLE usage_elsewhere RENAME TO usage")
        fake_anthropic.reply_text("Parquet, by day.")
        again = await core.consultant.handle(msg("Any answer?", thread="db"))
        assert again is not None and again.kind == "answer"
        assert any(
            "Where do we keep raw ticks?" in t for t in texts(fake_anthropic.requests[-1].body)
        )
    finally:
        db.close()
        await core.aclose()


async def test_a_failing_command_replies_with_a_reference(
    tmp_path: Path, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    core = build_core(make_settings(tmp_path), make_secrets(fake_anthropic))
    db = raw_db(tmp_path)
    try:
        db.execute("ALTER TABLE todos RENAME TO todos_elsewhere")
        with caplog.at_level(logging.ERROR, logger="bot.consultant"):
            reply = await core.consultant.handle(msg("!todo add Pick a broker", thread="cmd"))
        assert reply is not None and reply.kind == "error"
        ref = REF.search(reply.text)
        assert ref is not None and "OperationalError" in reply.text
        assert any(ref.group() in r.getMessage() for r in caplog.records)
    finally:
        db.close()
        await core.aclose()


def _crashed_turn(store: Store, thread: str, text: str) -> int:
    """What handle() stores before the model call, in a process that then died."""
    message = msg(text, thread=thread)
    with store.transaction():
        row = store.ensure_thread_for(message)
        return store.start_turn(
            row,
            event_key=f"slack:T1:{thread}",
            user="U1",
            user_name="n",
            text=text,
            content=[{"type": "text", "text": text}],
        )


async def test_recovery_logs_each_broken_turn_and_recovers_the_others(
    tmp_path: Path, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    settings, secrets = make_settings(tmp_path), make_secrets(fake_anthropic)
    crashed = build_core(settings, secrets)
    orphan = _crashed_turn(crashed.store, "orphan", "Question whose thread row is gone")
    corrupt = _crashed_turn(crashed.store, "corrupt", "Question with a corrupt history")
    fine = _crashed_turn(crashed.store, "fine", "What about drift monitoring?")
    await crashed.aclose()
    db = raw_db(tmp_path)  # foreign keys off, as an older build or a manual fix could leave it
    db.execute("UPDATE turns SET thread_id = 9999 WHERE id = ?", (orphan,))
    db.execute('UPDATE messages SET content = \'[{"type": "te\' WHERE turn_id = ?', (corrupt,))
    db.close()

    posted: list[tuple[str | None, str]] = []

    class Outbox:
        platform = "slack"

        async def post(self, channel: str, thread: str | None, text: str) -> str:
            posted.append((thread, text))
            return "ts1"

    restarted = build_core(settings, secrets)
    try:
        fake_anthropic.reply_text("Track PSI per feature.")
        with caplog.at_level(logging.ERROR, logger="bot.consultant"):
            done = await restarted.consultant.recover_pending({"slack": Outbox()})
        assert done == 2
        by_thread = dict(posted)
        assert by_thread["fine"] == f"Track PSI per feature.\n\n{SIGN_OFF}"
        assert restarted.store.get_turn(fine).status == "done"
        # The corrupt turn is answered with what broke and where to look, and closed.
        assert "JSONDecodeError" in by_thread["corrupt"]
        assert REF.search(by_thread["corrupt"])
        assert restarted.store.get_turn(corrupt).status == "failed"
        # The orphan could not even be started: logged with its id and traceback, not swallowed.
        lines = [r for r in caplog.records if f"recovering turn {orphan} failed" in r.getMessage()]
        assert lines and lines[0].exc_info is not None and REF.search(lines[0].getMessage())
    finally:
        await restarted.aclose()


async def test_recovery_that_cannot_read_the_database_is_logged_not_swallowed(
    tmp_path: Path,
    fake_anthropic: FakeAnthropic,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = build_core(make_settings(tmp_path), make_secrets(fake_anthropic))
    try:

        def broken(created_before: str) -> list[object]:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(core.store, "pending_turns", broken)
        with caplog.at_level(logging.ERROR, logger="bot.consultant"):
            assert await core.consultant.recover_pending({}) == 0
        [record] = [r for r in caplog.records if "could not list" in r.getMessage()]
        assert record.levelno == logging.ERROR and "err-" in record.getMessage()
        assert record.exc_info is not None
    finally:
        await core.aclose()
