"""The parsed-message cache (`Store._parsed`): bounded by bytes as well as entries."""

from __future__ import annotations

from pathlib import Path

from bot.store import Store


def _thread_with(store: Store, texts: list[str]) -> int:
    thread = store.ensure_thread(
        "console/t", platform="console", workspace="", channel="", thread="t", channel_key="c"
    )
    for text in texts:
        store.add_message(thread.id, None, "user", [{"type": "text", "text": text}])
    return thread.id


def test_the_cache_holds_no_more_bytes_than_its_limit_and_history_stays_whole(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "a.db")
    store.content_cache_limits = (1_000, 4_000)  # entries would allow all 40; bytes do not
    texts = [f"message {i}: " + "x" * 300 for i in range(40)]
    thread_id = _thread_with(store, texts)

    for _ in range(2):  # a second turn reads the same history, partly from the cache
        history = store.history_messages(thread_id, after_turn=-1, upto_turn=2**62)
        assert [m.content[0]["text"] for m in history] == texts
        entries, held = store.content_cache_usage
        assert held <= 4_000
        assert 0 < entries < len(texts)
    store.close()


def test_a_message_too_big_for_the_cache_is_read_without_evicting_the_others(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "a.db")
    store.content_cache_limits = (1_000, 8_000)
    small = [f"short {i}" for i in range(5)]
    thread_id = _thread_with(store, [*small, "y" * 5_000])

    history = store.history_messages(thread_id, after_turn=-1, upto_turn=2**62)
    assert history[-1].content[0]["text"] == "y" * 5_000
    entries, held = store.content_cache_usage
    assert entries == len(small)  # the pasted log was parsed, not kept
    assert held < 1_000
    store.close()


def test_the_entry_limit_still_holds(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    store.content_cache_limits = (3, 1_000_000)
    thread_id = _thread_with(store, [f"m{i}" for i in range(10)])

    store.history_messages(thread_id, after_turn=-1, upto_turn=2**62)
    assert store.content_cache_usage[0] == 3
    store.close()
