"""Issue 15: the events server (`adapters.slack.http.EventsServer`) acknowledges on its own
thread, hands each acknowledged event to bolt exactly once, and stops without leaving a thread,
a connection or a socket behind (the suite turns a ResourceWarning into an error)."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
from pathlib import Path

from tests.conftest import eventually
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_slack import FakeSlack, event_body
from tests.test_slack_adapter import (
    RunningBot,
    answered,
    barrier,
    slack_secrets,
    slack_settings,
)


def events_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "slack-events"]


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


async def test_a_retried_event_is_answered_once(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    for retry in (None, 1, 2):  # Slack's redeliveries carry X-Slack-Retry-Num
        assert (await bot.send(body, retry=retry))[0] == 200
    [reply] = await answered(fake_slack, "C0GENERAL", ts)
    await barrier(bot)
    assert fake_slack.thread_messages("C0GENERAL", ts) == [reply]
    assert len(fake_anthropic.message_requests) == 2  # the mention and the barrier


async def test_a_forged_event_gets_401_and_reaches_nobody(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    forged = event_body("message_im", channel="D0FORGED1", text="answer me")
    assert (await bot.send(forged, secret="not-the-signing-secret"))[0] == 401
    await barrier(bot)
    assert fake_slack.thread_messages("D0FORGED1", None) == []
    assert len(fake_anthropic.message_requests) == 1  # the barrier's


async def test_a_burst_of_twin_deliveries_gets_one_answer_each(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    mentions = [event_body("app_mention") for _ in range(20)]
    twins = [
        event_body("message_channel_with_mention", ts=m["event"]["ts"], text=m["event"]["text"])
        for m in mentions
    ]
    sent = await asyncio.gather(*(bot.send(b) for b in mentions + twins))
    assert [status for status, _ in sent] == [200] * 40
    for m in mentions:
        await answered(fake_slack, "C0GENERAL", m["event"]["ts"])
    await barrier(bot)
    for m in mentions:
        assert len(fake_slack.thread_messages("C0GENERAL", m["event"]["ts"])) == 1


async def test_stop_closes_the_listener_every_connection_and_the_thread(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    assert len(events_threads()) == 1
    idle = socket.create_connection(("127.0.0.1", bot.port))
    half = socket.create_connection(("127.0.0.1", bot.port))
    # Headers and part of a body: a request the server is still reading when it stops.
    half.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n{")
    body = event_body("message_im", channel="D0BEFORE1", text="before the stop")
    assert (await bot.send(body))[0] == 200  # keeps its keep-alive connection open
    try:
        for sock in (idle, half):
            sock.settimeout(30)
        assert await bot.stop() == 0
        # The server closed both connections (end of stream; a timeout raises), not the clients.
        assert await asyncio.to_thread(idle.recv, 1) == b""
        await asyncio.to_thread(read_to_end, half)
    finally:
        idle.close()
        half.close()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", bot.port)) != 0  # nothing listens any more
    assert events_threads() == []
    # An acknowledged event was still handed to bolt before the server went.
    await answered(fake_slack, "D0BEFORE1", None)
    gc.collect()  # a socket left open would be collected here: a ResourceWarning, an error


async def test_the_server_starts_and_stops_again_on_the_same_port(
    tmp_path: Path, fake_anthropic: FakeAnthropic, fake_slack: FakeSlack
) -> None:
    settings, secrets = slack_settings(tmp_path, fake_slack), slack_secrets(fake_anthropic)
    for n in range(3):
        running = await RunningBot(settings, secrets, fake_slack).start()
        body = event_body("message_im", channel=f"D0AGAIN{n:02d}", text="again")
        assert (await running.send(body))[0] == 200
        await answered(fake_slack, f"D0AGAIN{n:02d}", None)
        assert await running.stop() == 0
        await eventually(lambda: not events_threads(), what="the events thread to end")
    gc.collect()
