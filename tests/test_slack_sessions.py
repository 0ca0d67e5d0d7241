"""AgentSessions against the fake Slack Web API: `processing` with the first message of a thread
and `active` after the last, a refusal remembered per workspace and asked again after an hour,
and a session without a stop button taken back."""

from __future__ import annotations

from adapters.slack.client import make_client
from adapters.slack.sessions import RECHECK_SECONDS, AgentSessions
from tests.fakes.fake_slack import DEFAULT_SCOPES, FakeSlack

THREAD = ("C0GENERAL", "1764150000.000100")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sessions_on(fake: FakeSlack, clock: Clock) -> AgentSessions:
    return AgentSessions(make_client("xoxb-test-not-real", f"{fake.url}/api/"), clock=clock)


async def test_messages_of_one_thread_share_a_session_processing_then_active(
    fake_slack: FakeSlack,
) -> None:
    fake_slack.agent = True
    sessions = sessions_on(fake_slack, Clock())
    assert await sessions.begin("T0TEAM001", *THREAD, "Redis or Feast?")
    assert await sessions.begin("T0TEAM001", *THREAD, "And the TTL?")  # queued behind it
    assert sessions.closing_status(*THREAD) is None  # one more is still to come
    await sessions.end("T0TEAM001", *THREAD)
    assert fake_slack.session_statuses(*THREAD) == ["processing"]
    assert sessions.closing_status(*THREAD) == "active"
    await sessions.end("T0TEAM001", *THREAD)
    assert fake_slack.session_statuses(*THREAD) == ["processing", "active"]
    assert fake_slack.session_titles[THREAD] == "Redis or Feast?"


async def test_a_session_closed_by_the_stream_is_not_set_again_unless_work_goes_on(
    fake_slack: FakeSlack,
) -> None:
    fake_slack.agent = True
    sessions = sessions_on(fake_slack, Clock())
    assert await sessions.begin("T0TEAM001", *THREAD, "one")
    await sessions.end("T0TEAM001", *THREAD, closed_by_stream=True)
    assert fake_slack.session_statuses(*THREAD) == ["processing"]  # stopStream said active
    # A follow-up began while the stream closed the session: it is set back to processing.
    assert await sessions.begin("T0TEAM001", *THREAD, "two")
    assert await sessions.begin("T0TEAM001", *THREAD, "three")
    await sessions.end("T0TEAM001", *THREAD, closed_by_stream=True)
    assert fake_slack.session_statuses(*THREAD) == ["processing", "processing", "processing"]
    await sessions.end("T0TEAM001", *THREAD)
    assert fake_slack.session_statuses(*THREAD)[-1] == "active"


async def test_a_refusal_is_remembered_per_workspace_and_asked_again_after_an_hour(
    fake_slack: FakeSlack,
) -> None:
    fake_slack.agent = True
    fake_slack.scopes = set(DEFAULT_SCOPES) - {"assistant:write"}
    clock = Clock()
    sessions = sessions_on(fake_slack, clock)
    assert not await sessions.begin("T0TEAM001", *THREAD, "one")
    assert not await sessions.begin("T0TEAM001", *THREAD, "two")
    assert len(fake_slack.calls_of("agents.sessions.setStatus")) == 1
    assert not sessions.available("T0TEAM001") and sessions.available("T0OTHER01")
    fake_slack.scopes = set(DEFAULT_SCOPES)  # an admin declared the app an agent
    clock.now += RECHECK_SECONDS
    assert await sessions.begin("T0TEAM001", *THREAD, "three")
    assert fake_slack.session_statuses(*THREAD) == ["processing"]


async def test_a_session_without_a_stop_button_is_taken_back_and_not_used(
    fake_slack: FakeSlack,
) -> None:
    fake_slack.agent = True
    fake_slack.session_warning = "missing_agent_session_stopped_event_subscription"
    sessions = sessions_on(fake_slack, Clock())
    assert not await sessions.begin("T0TEAM001", *THREAD, "one")
    assert fake_slack.session_statuses(*THREAD) == ["processing", "active"]
    assert not await sessions.begin("T0TEAM001", *THREAD, "two")
    assert len(fake_slack.calls_of("agents.sessions.setStatus")) == 2


async def test_a_stop_with_nothing_running_moves_the_session_out_of_processing(
    fake_slack: FakeSlack,
) -> None:
    fake_slack.agent = True
    sessions = sessions_on(fake_slack, Clock())
    await sessions.settle("T0TEAM001", *THREAD)
    assert fake_slack.session_statuses(*THREAD) == ["active"]
