"""Issue 15: Slack HTTP acknowledgements do not queue behind the bot's turns.

The events endpoint answers on a thread of its own. Each test here blocks the bot's event loop
on purpose (a synchronous request from the test coroutine) and still gets its answer: before
the fix the server lived on that loop, and the request could only time out.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from tests.fakes.fake_slack import FakeSlack, event_body, event_request, signed_headers
from tests.test_slack_adapter import (
    SIGNING_SECRET,
    RunningBot,
    answered,
)

# Far longer than any acknowledgement takes; reached only when nothing answers at all.
NO_ANSWER_SECONDS = 10.0


def post_blocking(port: int, raw: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST from the calling thread, holding it (and so the bot's event loop) until answered."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/slack/events", data=raw, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=NO_ANSWER_SECONDS) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_an_event_is_acknowledged_while_the_bots_loop_is_busy(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    mention = event_body("app_mention")
    twin = event_body(
        "message_channel_with_mention", ts=mention["event"]["ts"], text=mention["event"]["text"]
    )
    # Slack sends a channel mention twice; both are acknowledged with the loop held.
    for body in (mention, twin):
        status, _ = post_blocking(bot.port, *event_request(body, SIGNING_SECRET))
        assert status == 200
    # Once the loop is free, the acknowledged event reaches the listeners: one answer.
    [reply] = await answered(fake_slack, "C0GENERAL", mention["event"]["ts"])
    assert reply.text.startswith("Fake answer to: Alice:")
    assert len(fake_slack.thread_messages("C0GENERAL", mention["event"]["ts"])) == 1


async def test_a_forged_event_is_refused_while_the_bots_loop_is_busy(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    raw, headers = event_request(event_body("app_mention"), "not-the-signing-secret")
    status, _ = post_blocking(bot.port, raw, headers)
    assert status == 401


async def test_a_request_that_needs_bolts_answer_still_gets_it(bot: RunningBot) -> None:
    # url_verification's answer is the challenge: bolt writes it, on the bot's loop.
    assert bot.session is not None
    raw = json.dumps({"token": "x", "challenge": "c0ffee-early", "type": "url_verification"})
    url = f"http://127.0.0.1:{bot.port}/slack/events"
    async with bot.session.post(
        url, data=raw, headers=signed_headers(SIGNING_SECRET, raw.encode())
    ) as response:
        assert response.status == 200
        assert "c0ffee-early" in await response.text()


async def test_an_event_of_the_wrong_shape_still_gets_bolts_400(bot: RunningBot) -> None:
    body = event_body("app_mention")
    body["event"]["text"] = ["not", "text"]
    status, _ = await bot.send(body)
    assert status == 400


async def test_an_event_is_answered_while_another_sender_is_slow_to_send_its_body(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    # A request whose body never finishes arriving keeps its handler busy on the server.
    slow = socket.create_connection(("127.0.0.1", bot.port))
    try:
        slow.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"type": '
        )
        body = event_body("app_mention")
        status, _ = await bot.send(body)
        assert status == 200
        # Acknowledged events wait for the requests around them only briefly, not for this one.
        await answered(fake_slack, "C0GENERAL", body["event"]["ts"])
    finally:
        slow.close()
