"""The per-thread history held in memory (`Store._history`): each read equals what a fresh
connection reads from the file, after this connection's writes, its rolled-back transactions,
another connection's commits, compaction and `forget`; and a thread read once is not read again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.store import Store, StoredMessage, ThreadRow

EVERYTHING = {"after_turn": -1, "upto_turn": 2**62}


def _thread(store: Store, name: str = "t") -> ThreadRow:
    return store.ensure_thread(
        f"console/{name}",
        platform="console",
        workspace="",
        channel="",
        thread=name,
        channel_key="c",
    )


def _turn(store: Store, thread: ThreadRow, text: str) -> int:
    with store.transaction():
        return store.start_turn(
            thread,
            event_key=None,
            user="U1",
            user_name="alice",
            text=text,
            content=[{"type": "text", "text": text}],
        )


def _answer(store: Store, thread: ThreadRow, turn_id: int, text: str) -> None:
    with store.transaction():
        store.add_message(thread.id, turn_id, "assistant", [{"type": "text", "text": text}])
        store.finish_turn(turn_id, status="done", reply=text)


def _fresh(path: Path, thread_id: int, **span: int) -> list[StoredMessage]:
    """What a connection that never cached anything reads."""
    other = Store.open(path)
    try:
        return other.history_messages(thread_id, **(span or EVERYTHING))
    finally:
        other.close()


def _messages_selects(store: Store) -> list[str]:
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    return seen


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "h.db"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    """The connection whose cache is under test, closed even when a check fails."""
    opened = Store.open(path)
    try:
        yield opened
    finally:
        opened.close()


def test_a_thread_is_read_from_the_database_once_then_kept_in_step_with_its_writes(
    path: Path,
    store: Store,
) -> None:
    thread = _thread(store)
    first = _turn(store, thread, "Kafka or Redis Streams?")
    assert [m.status for m in store.history_messages(thread.id, **EVERYTHING)] == ["pending"]
    seen = _messages_selects(store)
    _answer(store, thread, first, "Kafka, for replay.")
    second = _turn(store, thread, "And the retention?")
    history = store.history_messages(thread.id, **EVERYTHING)
    store.conn.set_trace_callback(None)
    assert not [s for s in seen if s.startswith("SELECT") and "FROM messages" in s]
    assert history == _fresh(path, thread.id)
    assert [(m.turn_id, m.role, m.status) for m in history] == [
        (first, "user", "complete"),
        (first, "assistant", "complete"),
        (second, "user", "pending"),
    ]


def test_an_earlier_turn_answered_after_a_later_one_was_queued_keeps_turn_order(
    path: Path,
    store: Store,
) -> None:
    thread = _thread(store)
    first = _turn(store, thread, "First question")
    store.history_messages(thread.id, **EVERYTHING)  # cached from here on
    queued = _turn(store, thread, "Queued follow-up")
    _answer(store, thread, first, "First answer")  # stored after the queued question
    only_first = store.history_messages(thread.id, after_turn=-1, upto_turn=first)
    assert [m.content[0]["text"] for m in only_first] == ["First question", "First answer"]
    assert store.history_messages(thread.id, **EVERYTHING) == _fresh(path, thread.id)
    assert store.history_tokens(thread.id, after_turn=-1, upto_turn=queued) == sum(
        m.tokens for m in _fresh(path, thread.id)
    )


def test_a_rolled_back_transaction_leaves_nothing_in_the_cached_history(
    path: Path, store: Store
) -> None:
    thread = _thread(store)
    turn = _turn(store, thread, "Kept question")
    store.history_messages(thread.id, **EVERYTHING)
    with pytest.raises(RuntimeError), store.transaction():
        store.add_message(thread.id, turn, "assistant", [{"type": "text", "text": "never stored"}])
        store.finish_turn(turn, status="done", reply="never stored")
        raise RuntimeError("the reply could not be posted")
    history = store.history_messages(thread.id, **EVERYTHING)
    assert history == _fresh(path, thread.id)
    assert [(m.content[0]["text"], m.status) for m in history] == [("Kept question", "pending")]


def test_a_thread_first_read_inside_a_transaction_that_rolls_back_is_read_again(
    store: Store,
) -> None:
    thread = _thread(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.add_message(thread.id, None, "user", [{"type": "text", "text": "context"}])
        assert len(store.history_messages(thread.id, **EVERYTHING)) == 1
        raise RuntimeError("the import failed")
    assert store.history_messages(thread.id, **EVERYTHING) == []


def test_another_connection_s_commit_is_seen_at_the_next_read(path: Path, store: Store) -> None:
    thread = _thread(store)
    turn = _turn(store, thread, "Question here")
    store.history_messages(thread.id, **EVERYTHING)
    other = Store.open(path)  # another process on the same file (a rolling deploy)
    _answer(other, thread, turn, "Answered over there")
    assert [m.content[0]["text"] for m in store.history_messages(thread.id, **EVERYTHING)] == [
        "Question here",
        "Answered over there",
    ]
    other.forget(thread.id)
    assert store.history_messages(thread.id, **EVERYTHING) == []
    other.close()


def test_forget_and_compaction_shrink_what_is_held(path: Path, store: Store) -> None:
    thread = _thread(store)
    turns = [_turn(store, thread, f"question {i} " + "x" * 200) for i in range(6)]
    for turn in turns:
        _answer(store, thread, turn, "answer " + "y" * 200)
    store.history_messages(thread.id, **EVERYTHING)
    held = store.history_cache_usage[1]
    store.set_summary(thread.id, "the first four turns", turns[3])
    after = store.history_messages(thread.id, after_turn=turns[3], upto_turn=2**62)
    assert after == _fresh(path, thread.id, after_turn=turns[3], upto_turn=2**62)
    assert [m.turn_id for m in after] == [turns[4], turns[4], turns[5], turns[5]]
    assert 0 < store.history_cache_usage[1] < held
    # A reader that wants the summarised turns too gets them from the database.
    assert store.history_messages(thread.id, **EVERYTHING) == _fresh(path, thread.id)
    store.forget(thread.id)
    assert store.history_cache_usage == (0, 0)
    assert store.history_messages(thread.id, **EVERYTHING) == []


def test_the_cache_holds_no_more_threads_or_characters_than_its_limits(
    path: Path, store: Store
) -> None:
    store.history_cache_limits = (3, 40_000)
    threads = [_thread(store, f"t{i}") for i in range(5)]
    for thread in threads:
        _turn(store, thread, "q" * 1_000)
        store.history_messages(thread.id, **EVERYTHING)
    held, chars = store.history_cache_usage
    assert held == 3 and 0 < chars <= 40_000
    big = _thread(store, "big")
    _turn(store, big, "z" * 6_000)  # over an eighth of the limit: read, never kept
    assert store.history_messages(big.id, **EVERYTHING) == _fresh(path, big.id)
    assert store.history_cache_usage[1] <= 40_000
    for thread in threads:  # evicted ones are read again, whole
        assert store.history_messages(thread.id, **EVERYTHING) == _fresh(path, thread.id)
