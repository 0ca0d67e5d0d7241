"""Recovery at start with several processes on one database (a rolling deploy): every
interrupted turn is answered once, a live holder is left to finish, a dead one is taken over."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bot.consultant
from bot.app import Core, build_core
from bot.events import IncomingMessage
from bot.signoff import SIGN_OFF
from bot.store import Store
from tests.conftest import eventually, make_secrets, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic


@dataclass
class Outbox:
    """One process's platform outbox; posting takes a moment, like a real API call."""

    platform: str = "slack"
    posted: list[tuple[str, str | None, str]] = field(default_factory=list)

    async def post(self, channel: str, thread: str | None, text: str) -> str:
        self.posted.append((channel, thread, text))
        await asyncio.sleep(0.05)
        return f"ts{len(self.posted)}"


def question(text: str, thread: str) -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread=thread,
        user="U1",
        user_name="alice",
        text=text,
        event_id=f"Ev-{thread}",
    )


def store_pending_turn(store: Store, text: str, thread: str) -> int:
    """What handle() stores before the model call, in a process that then died."""
    message = question(text, thread)
    with store.transaction():
        row = store.ensure_thread_for(message)
        return store.start_turn(
            row,
            event_key=f"slack:T1:{message.event_id}",
            user=message.user,
            user_name=message.user_name,
            text=text,
            content=[{"type": "text", "text": text}],
        )


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    # A waiting process looks again every 2 s in production; tests need not wait that long.
    monkeypatch.setattr(bot.consultant, "RECOVERY_POLL_SECONDS", 0.05)


async def two_processes(tmp_path: Path, fake: FakeAnthropic) -> tuple[Core, Core]:
    settings, secrets = make_settings(tmp_path), make_secrets(fake)
    return build_core(settings, secrets), build_core(settings, secrets)


async def test_two_processes_recovering_together_answer_a_crashed_turn_once(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    dead = Store.open(make_settings(tmp_path).storage.path)
    turn_id = store_pending_turn(dead, "How do we shard the feature store?", "crash")
    dead.close()
    first, second = await two_processes(tmp_path, fake_anthropic)
    try:
        fake_anthropic.latency = 0.3  # both are up while the first one is still answering
        fake_anthropic.reply_text("Shard by entity id.")
        a, b = Outbox(), Outbox()
        counts = await asyncio.gather(
            first.consultant.recover_pending({"slack": a}),
            second.consultant.recover_pending({"slack": b}),
        )
        assert sorted(counts) == [0, 1]
        assert a.posted + b.posted == [("C1", "crash", f"Shard by entity id.\n\n{SIGN_OFF}")]
        assert len(fake_anthropic.message_requests) == 1
        assert first.store.get_turn(turn_id).posted_at is not None
    finally:
        fake_anthropic.latency = 0.0
        await first.aclose()
        await second.aclose()


async def test_two_processes_post_a_stored_but_unposted_answer_once(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    dead = Store.open(make_settings(tmp_path).storage.path)
    turn_id = store_pending_turn(dead, "Which queue?", "unposted")
    dead.finish_turn(turn_id, status="done", reply=f"Use Kafka.\n\n{SIGN_OFF}")  # then it died
    dead.close()
    first, second = await two_processes(tmp_path, fake_anthropic)
    try:
        a, b = Outbox(), Outbox()
        counts = await asyncio.gather(
            first.consultant.recover_pending({"slack": a}),
            second.consultant.recover_pending({"slack": b}),
        )
        assert sorted(counts) == [0, 1]
        assert a.posted + b.posted == [("C1", "unposted", f"Use Kafka.\n\n{SIGN_OFF}")]
        assert fake_anthropic.message_requests == []
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_turn_a_live_process_recovers_is_left_to_it(
    tmp_path: Path, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.consultant")
    path = make_settings(tmp_path).storage.path
    dead = Store.open(path)
    turn_id = store_pending_turn(dead, "Batch or stream?", "held")
    dead.close()
    peer = Store.open(path)  # another process that claimed the turn and is answering it
    assert peer.claim_recovery(turn_id)
    core = build_core(make_settings(tmp_path), make_secrets(fake_anthropic))
    try:
        outbox = Outbox()
        recovering = asyncio.create_task(core.consultant.recover_pending({"slack": outbox}))
        await eventually(
            lambda: recovering.done() or "being recovered by another process" in caplog.text,
            "the turn to be seen as held",
        )
        assert outbox.posted == []
        peer.finish_turn(turn_id, status="done", reply=f"Stream it.\n\n{SIGN_OFF}")
        peer.mark_posted(turn_id)
        assert await asyncio.wait_for(recovering, 10) == 0
        assert outbox.posted == []
        assert fake_anthropic.message_requests == []
    finally:
        peer.close()
        await core.aclose()


async def test_a_turn_whose_recovering_process_died_is_taken_over(
    tmp_path: Path, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.consultant")
    path = make_settings(tmp_path).storage.path
    dead = Store.open(path)
    turn_id = store_pending_turn(dead, "Batch or stream?", "orphan")
    assert dead.claim_recovery(turn_id)  # it claimed the turn, then was killed too
    dead.close()
    core = build_core(make_settings(tmp_path), make_secrets(fake_anthropic))
    try:
        fake_anthropic.reply_text("Batch first.")
        outbox = Outbox()
        recovering = asyncio.create_task(core.consultant.recover_pending({"slack": outbox}))
        await eventually(
            lambda: recovering.done() or "being recovered by another process" in caplog.text,
            "the turn to be seen as held",
        )
        assert outbox.posted == []  # its claim is fresh: it may still be alive
        stale = datetime.now(UTC) - core.store.recovery_lease - timedelta(seconds=1)
        core.store.conn.execute(  # a lease later, nobody renewed it
            "UPDATE turns SET recovery_claimed_at = ? WHERE id = ?",
            (stale.isoformat(timespec="microseconds"), turn_id),
        )
        assert await asyncio.wait_for(recovering, 10) == 1
        assert outbox.posted == [("C1", "orphan", f"Batch first.\n\n{SIGN_OFF}")]
    finally:
        await core.aclose()
