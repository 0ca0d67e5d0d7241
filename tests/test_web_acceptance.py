"""Issue 8 item 2 acceptance, tried as a new user would: `archbot run` (a real subprocess) in Slack
HTTP mode reads hostile pages with fetch_url and keeps acknowledging Slack while it does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bot.web import TOTAL_TIMEOUT
from tests.chat_helpers import tool_result
from tests.conftest import wait_until
from tests.fakes.fake_anthropic import FakeAnthropic, RecordedRequest, ServerThread
from tests.fakes.fake_slack import FakeSlack, event_body
from tests.fakes.fake_web import FakeWeb
from tests.slack_run import SlackRun, serving_model, serving_slack


@pytest.fixture(scope="module")
def model() -> Iterator[FakeAnthropic]:
    with serving_model() as fake:
        yield fake


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with serving_slack() as fake:
        yield fake


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[FakeWeb, str]]:
    fake = FakeWeb()
    server = ServerThread(fake.app()).start()
    try:
        yield fake, server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def archbot(
    tmp_path_factory: pytest.TempPathFactory, slack: FakeSlack, model: FakeAnthropic
) -> Iterator[SlackRun]:
    """`archbot run` with fetch_url allowed to reach the loopback fake web."""
    with SlackRun(
        tmp_path_factory.mktemp("archbot"),
        slack,
        model,
        ARCHBOT_FETCH__ALLOW_PRIVATE_ADDRESSES="true",  # the fake web is on 127.0.0.1
        ARCHBOT_LLM__MAX_CONCURRENCY="32",
    ) as bot:
        yield bot


def converter_pids(parent: int) -> set[int]:
    """The `bot.web_worker` processes whose parent is `parent`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        if ppid == parent and b"bot.web_worker" in cmdline:
            found.add(int(entry.name))
    return found


def fetch_result(model: FakeAnthropic, url: str) -> tuple[str, bool]:
    """Wait for the model request that carries fetch_url's result for `url`."""

    def carrying() -> RecordedRequest | None:
        for request in model.message_requests:
            last = request.body["messages"][-1]
            if last["role"] == "user" and isinstance(last["content"], list):
                if any(b.get("type") == "tool_result" for b in last["content"]):
                    text, _ = tool_result(request)
                    if url in text:
                        return request
        return None

    return tool_result(wait_until(carrying, what=f"fetch_url's result for {url}", within=30))


def test_slack_is_acknowledged_while_fetch_url_converts_a_2mb_page(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic, pages: tuple[FakeWeb, str]
) -> None:
    web, base = pages
    url = f"{base}/big2m"
    model.reply_tool_use("fetch_url", {"url": url})
    assert archbot.send(event_body("app_mention", channel="C0FETCH"))[0] == 200
    wait_until(lambda: "/big2m" in web.hits, what="the 2 MB page to be requested")
    # Twenty other events, one every 0.1 s, over the time the page is read and converted; a
    # watcher records the converter processes of archbot seen meanwhile.
    bodies = [event_body("app_mention", channel=f"C0BUSY{i:02d}") for i in range(20)]
    started = time.monotonic()
    seen: set[int] = set()
    sending = threading.Event()
    sending.set()

    def watch() -> None:
        while sending.is_set():
            seen.update(converter_pids(archbot.proc.pid))
            time.sleep(0.005)

    def paced(i: int) -> tuple[int, float]:
        time.sleep(max(0.0, started + i * 0.1 - time.monotonic()))  # pacing the load, not waiting
        return archbot.send(bodies[i])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(len(bodies)) as pool:
            acks = list(pool.map(paced, range(len(bodies))))
    finally:
        sending.clear()
        watcher.join()
    assert [status for status, _ in acks] == [200] * 20
    slowest = max(seconds for _, seconds in acks)
    assert slowest < 0.5, f"slowest acknowledgement {slowest:.3f} s"
    assert seen, "no converter process ran while the events were sent"
    text, is_error = fetch_result(model, url)
    assert not is_error, text[:500]
    assert "cut at 40,000 characters" in text and "**partitioned**" in text
    # Every turn answered before the next test scripts the model again.
    channels = ["C0FETCH", *(f"C0BUSY{i:02d}" for i in range(20))]
    wait_until(lambda: all(slack.messages_in(c) for c in channels), what="21 answers", within=60)


def test_a_96kb_nested_list_page_is_a_tool_error_within_the_fetch_budget(
    archbot: SlackRun, model: FakeAnthropic, pages: tuple[FakeWeb, str]
) -> None:
    _, base = pages
    url = f"{base}/nested/ul/96000"
    model.reply_tool_use("fetch_url", {"url": url})
    started = time.monotonic()
    assert archbot.send(event_body("app_mention", channel="C0NESTED"))[0] == 200
    text, is_error = fetch_result(model, url)
    assert time.monotonic() - started < TOTAL_TIMEOUT
    assert is_error
    assert "nests its HTML elements more than 512 levels deep" in text
