"""Answer feedback storage (one vote per answer and person, latest click wins) and its export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import CommandError
from bot.evals.feedback import export_drafts
from bot.evals.scenarios import load_path
from bot.events import IncomingMessage
from bot.feedback import down_votes_since, record_vote, votes_for
from bot.store import Store


def answered_turn(store: Store, text: str, reply: str) -> int:
    msg = IncomingMessage("slack", "T1", "C1", "1700.1", "U9", text, f"ev-{text}", user_name="Ann")
    with store.transaction():
        thread = store.ensure_thread_for(msg)
        turn = store.start_turn(
            thread,
            event_key=msg.event_id,
            user="U9",
            user_name="Ann",
            text=text,
            content=[{"type": "text", "text": text}],
        )
        store.finish_turn(turn, status="done", reply=reply)
    return turn


def test_the_latest_click_per_person_wins(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    try:
        assert "m007_answer_feedback" in store.applied_migrations()
        turn = answered_turn(store, "Feast or Postgres?", "Postgres.")
        record_vote(store, turn, "U1", "up")
        record_vote(store, turn, "U1", "down")
        record_vote(store, turn, "U2", "up")
        assert [(v.user, v.vote) for v in votes_for(store, turn)] == [("U1", "down"), ("U2", "up")]
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        assert [v.user for v in down_votes_since(store, hour_ago)] == ["U1"]
        assert down_votes_since(store, datetime.now(UTC) + timedelta(minutes=1)) == []
        with pytest.raises(CommandError):
            record_vote(store, turn, "U1", "meh")
        with pytest.raises(CommandError):
            record_vote(store, turn + 99, "U1", "down")
    finally:
        store.close()


def test_only_the_last_weeks_thumbs_down_are_exported_and_they_load(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    try:
        turn = answered_turn(store, "How do we version datasets?", "Use folders.")
        record_vote(store, turn, "U1", "down")
        later = datetime.now(UTC) + timedelta(days=8)
        assert export_drafts(store, tmp_path / "old", now=later) == ([], [])
        written, skipped = export_drafts(store, tmp_path / "drafts")
    finally:
        store.close()
    assert skipped == [] and [p.name for p in written] == [f"feedback-{turn}.json"]
    (draft,) = load_path(tmp_path / "drafts")
    assert draft.draft and draft.turns == ["How do we version datasets?"]
    assert "Use folders." in draft.notes and "slack/T1/C1/1700.1" in draft.notes
    assert json.loads(written[0].read_text())["checks"] == {"pitfalls": []}
