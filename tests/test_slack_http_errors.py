"""Issue 8 item 5: a bad request to /slack/events gets 400 or 401, one log line and no
traceback, whether or not it is signed; `archbot run` is tried as a subprocess too."""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier

from adapters.slack.http import request_problem
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_slack import FakeSlack, event_body, signed_headers
from tests.slack_run import SIGNING_SECRET as CLI_SECRET
from tests.slack_run import SlackRun, serving_model
from tests.test_slack_adapter import (
    SIGNING_SECRET,
    RunningBot,
    answered,
)

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def unsigned(content_type: str = JSON, timestamp: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp or str(int(time.time())),
        "X-Slack-Signature": "v0=" + "0" * 64,
    }


def signed(raw: bytes, content_type: str = JSON) -> dict[str, str]:
    return signed_headers(SIGNING_SECRET, raw, content_type=content_type)


MENTION = json.dumps(event_body("app_mention")).encode()

# (name, raw body, headers, expected status)
# Headers are made when a test runs: a signature made at import goes stale (5 minutes) in a
# long suite.
BAD_REQUESTS: list[tuple[str, bytes, Callable[[], dict[str, str]], int]] = [
    ("non-numeric timestamp", MENTION, lambda: unsigned(timestamp="soon"), 401),
    ("unicode-digit timestamp", MENTION, lambda: unsigned(timestamp="\u0661\u0662\u0663"), 401),
    ("huge timestamp", MENTION, lambda: unsigned(timestamp="9" * 40), 401),
    ("no signature headers", MENTION, lambda: {"Content-Type": JSON}, 401),
    ("malformed JSON, bad signature", b'{"type": "event_callback", ', lambda: unsigned(), 401),
    ("non-UTF-8, bad signature", b"\xff\xfe{}", lambda: unsigned(), 400),
    ("missing body, bad signature", b"", lambda: unsigned(), 401),
    (
        "signed malformed JSON",
        b'{"type": "event_callback", ',
        lambda: signed(b'{"type": "event_callback", '),
        400,
    ),
    ("signed non-UTF-8", b'{"a": "\xff"}', lambda: signed(b'{"a": "\xff"}'), 400),
    ("signed JSON array", b"[1, 2]", lambda: signed(b"[1, 2]"), 400),
    ("signed JSON string", b'"hi"', lambda: signed(b'"hi"'), 400),
    ("signed missing body", b"", lambda: signed(b""), 400),
    ("signed deeply nested JSON", b"[" * 100_000, lambda: signed(b"[" * 100_000), 400),
    (
        "signed form with a broken payload",
        b"payload=%7Bnope",
        lambda: signed(b"payload=%7Bnope", FORM),
        400,
    ),
    (
        "signed form with an array payload",
        b"payload=%5B1%5D",
        lambda: signed(b"payload=%5B1%5D", FORM),
        400,
    ),
]

ODD_SHAPES = [
    {"type": "event_callback", "event": "app_mention"},
    {"type": "event_callback", "event": ["app_mention"]},
    {"type": "event_callback", "event": {"type": "app_mention", "user": ["U1"]}},
    {"type": "event_callback", "event": {"type": "message", "channel": {"id": "C1"}}},
    {"type": "event_callback", "authorizations": "T1", "event": {"type": "app_mention"}},
    {"type": "event_callback", "authorizations": [None], "event": {"type": "app_mention"}},
    {"type": "event_callback", "team_id": ["T1"], "event": {"type": "app_mention"}},
    {"type": "block_actions", "team": ["T1"], "user": "U1"},
    {"type": "block_actions", "user": ["U1"], "team": {"id": "T0TEAM001"}},
    {"type": ["event_callback"], "event": {}},
    {"type": "event_callback", "event": {"type": ["app_mention"]}},
    {"type": "event_callback", "event": {"type": "message", "subtype": {}}},
    {"type": "url_verification"},
    {},
]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.exc_info or "Traceback" in r.getMessage() or r.levelno >= logging.ERROR
    ]


@pytest.mark.parametrize(
    ("name", "raw", "headers", "status"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
async def test_a_bad_request_gets_4xx_and_one_log_line(
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
    name: str,
    raw: bytes,
    headers: Callable[[], dict[str, str]],
    status: int,
) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    got, _ = await bot._post(raw, headers())
    assert got == status, name
    assert not tracebacks(caplog)
    refused = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(refused) == 1
    assert SIGNING_SECRET not in caplog.text


@pytest.mark.parametrize("body", ODD_SHAPES, ids=[json.dumps(b)[:60] for b in ODD_SHAPES])
async def test_a_signed_body_of_an_odd_shape_never_gets_a_500_or_a_traceback(
    bot: RunningBot, caplog: pytest.LogCaptureFixture, body: dict[str, object]
) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    raw = json.dumps(body).encode()
    got, _ = await bot._post(raw, signed(raw))
    assert got < 500
    assert not tracebacks(caplog)


async def test_an_oversized_body_gets_413_and_one_log_line(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert bot.session is not None
    url = f"http://127.0.0.1:{bot.port}/slack/events"
    body = io.BytesIO(b"x" * (3 << 20))  # a stream: aiohttp warns about large raw bytes
    async with bot.session.post(url, data=body, headers=unsigned()) as response:
        assert response.status == 413
    assert not tracebacks(caplog)
    assert [r for r in caplog.records if "refused a request" in r.getMessage()]


async def test_after_bad_requests_a_good_one_is_still_answered(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    for _, raw, headers, _ in BAD_REQUESTS:
        await bot._post(raw, headers())
    body = event_body("message_im", channel="D0AFTER01", text="still there?")
    assert (await bot.send(body))[0] == 200
    await answered(fake_slack, "D0AFTER01", None)


def test_request_problem_checks_the_signature_before_reading_the_body() -> None:
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert request_problem(MENTION, signed(MENTION), verifier) is None
    assert request_problem(b"[", unsigned(), verifier) == (401, "bad or stale signature")
    stale = signed_headers(SIGNING_SECRET, MENTION, timestamp=int(time.time()) - 600)
    assert request_problem(MENTION, stale, verifier) == (401, "bad or stale signature")
    status, _ = request_problem(b"[", signed(b"["), verifier) or (0, "")
    assert status == 400


# acceptance: `archbot run` as a subprocess ------------------------------------------------


@pytest.fixture
def model() -> Iterator[FakeAnthropic]:
    with serving_model() as fake:
        yield fake


def post(port: int, raw: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/slack/events", data=raw, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        exc.close()
        return int(exc.code)


def test_archbot_run_answers_a_non_numeric_timestamp_with_401_and_no_traceback(
    tmp_path: Path, fake_slack: FakeSlack, model: FakeAnthropic
) -> None:
    bot = SlackRun(tmp_path, fake_slack, model)
    try:
        assert post(bot.port, MENTION, unsigned(timestamp="not-a-number")) == 401
        assert post(bot.port, b'{"type": ', unsigned()) == 401
        raw = b"[1, 2]"
        assert post(bot.port, raw, signed_headers(CLI_SECRET, raw)) == 400
    finally:
        assert bot.stop() == 0
    log = bot.log_path.read_text()
    assert "Traceback" not in log
    assert log.count("refused a request") == 3
    assert CLI_SECRET not in log
