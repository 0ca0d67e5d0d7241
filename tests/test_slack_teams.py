"""Issue 8 item 4: only the installed workspace (or Grid org) is served. Pure checks of the
gate on payload shapes, then signed events and slash commands through the Slack fake."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.gate import Installation, event_problem, is_addressed_to
from tests.conftest import eventually
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_slack import TEAM_ID, FakeSlack, event_body, load_payload
from tests.test_slack_adapter import (
    RunningBot,
    answered,
    barrier,
    slack_secrets,
    slack_settings,
)

OTHER_TEAM = "T0OTHER02"
OUR_ORG = "E0GRID001"
OURS = Installation(team_id=TEAM_ID)


def from_team(body: dict[str, Any], team: str, enterprise: str | None = None) -> dict[str, Any]:
    """The same event as Slack delivers it for the app's installation in `team`."""
    body = copy.deepcopy(body)
    body["team_id"] = team
    body["context_team_id"] = team
    body["event"]["team"] = team
    body["authorizations"] = [
        {
            "enterprise_id": enterprise,
            "team_id": team,
            "user_id": "U0BOTOTHER",
            "is_bot": True,
            "is_enterprise_install": False,
        }
    ]
    return body


def shared_channel_mention(**event: Any) -> dict[str, Any]:
    """A Slack Connect channel: the author is from another org; the installation is ours."""
    body = event_body("app_mention", channel="C0SHARED01", user="U0EXTERN01", **event)
    body["enterprise_id"] = "E0THEIRS01"  # the author's org, as Slack sends it
    body["is_ext_shared_channel"] = True
    body["event"]["user_team"] = OTHER_TEAM
    body["event"]["source_team"] = OTHER_TEAM
    return body


def org_install_mention(workspace: str, enterprise: str) -> dict[str, Any]:
    """An org-wide installation's event: the authorization names the org, not a workspace."""
    body = event_body("app_mention", channel="C0ORGWIDE1")
    body.update(team_id=workspace, enterprise_id=enterprise, context_team_id=workspace)
    body["event"]["team"] = workspace
    body["authorizations"] = [
        {
            "enterprise_id": enterprise,
            "team_id": None,
            "user_id": "U0BOT0001",
            "is_bot": True,
            "is_enterprise_install": True,
        }
    ]
    return body


def slash_form(team: str, **extra: str) -> dict[str, str]:
    form = {k: str(v) for k, v in load_payload("slash_command").items()}
    form.update(team_id=team, **extra)
    return form


# pure: which payloads are addressed to the installation -------------------------------------


def test_our_workspace_is_served_and_another_is_not() -> None:
    mine = event_body("app_mention")
    assert is_addressed_to(mine, OURS)
    assert not is_addressed_to(from_team(mine, OTHER_TEAM), OURS)
    # The envelope says ours but the authorization is another installation's: not ours.
    forged = from_team(mine, OTHER_TEAM)
    forged["team_id"] = TEAM_ID
    assert not is_addressed_to(forged, OURS)
    # ... unless it is a Slack Connect channel, where Slack may name the other org's install.
    assert is_addressed_to({**forged, "is_ext_shared_channel": True}, OURS)
    assert not is_addressed_to({**from_team(mine, OTHER_TEAM), "is_ext_shared_channel": True}, OURS)
    assert not is_addressed_to({"type": "event_callback", "event": {}}, OURS)  # names nobody
    assert not is_addressed_to(mine, Installation(team_id=""))


def test_slack_connect_channels_are_ours_even_when_the_author_is_not() -> None:
    assert is_addressed_to(shared_channel_mention(), OURS)
    grid = Installation(team_id=TEAM_ID, enterprise_id=OUR_ORG)
    body = shared_channel_mention()
    body["authorizations"][0]["enterprise_id"] = OUR_ORG
    assert is_addressed_to(body, grid)


def test_an_org_wide_install_serves_every_workspace_of_its_org_only() -> None:
    org = Installation(team_id=OUR_ORG, enterprise_id=OUR_ORG, org_wide=True)
    assert is_addressed_to(org_install_mention("T0WORKSP03", OUR_ORG), org)
    assert not is_addressed_to(org_install_mention("T0WORKSP03", "E0OTHER002"), org)
    # A workspace install inside a Grid org does not serve the org's other workspaces.
    workspace = Installation(team_id=TEAM_ID, enterprise_id=OUR_ORG)
    sibling = from_team(event_body("app_mention"), "T0SIBLING1", enterprise=OUR_ORG)
    assert not is_addressed_to(sibling, workspace)
    assert not is_addressed_to(org_install_mention("T0WORKSP03", OUR_ORG), workspace)


def test_slash_commands_and_interactions_are_checked_by_their_team() -> None:
    assert is_addressed_to(slash_form(TEAM_ID), OURS)
    assert not is_addressed_to(slash_form(OTHER_TEAM), OURS)
    org = Installation(team_id=OUR_ORG, enterprise_id=OUR_ORG, org_wide=True)
    assert is_addressed_to(slash_form("T0WORKSP03", enterprise_id=OUR_ORG), org)
    assert not is_addressed_to(slash_form("T0WORKSP03", enterprise_id="E0OTHER002"), org)
    action = {"type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": "U0ALICE01"}}
    assert is_addressed_to(action, OURS)
    assert not is_addressed_to({**action, "team": {"id": OTHER_TEAM}}, OURS)


def test_installation_comes_from_auth_test() -> None:
    assert Installation.from_auth_test({"team_id": TEAM_ID, "is_enterprise_install": False}) == OURS
    org = {"team_id": OUR_ORG, "enterprise_id": OUR_ORG, "is_enterprise_install": True}
    assert Installation.from_auth_test(org) == Installation(OUR_ORG, OUR_ORG, org_wide=True)


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"type": "app_mention", "user": ["U1"]}, "event field 'user' is a list"),
        ({"type": "message", "subtype": {}}, "event field 'subtype' is a dict"),
        ({"type": "message", "files": "x"}, "event field 'files' is a str"),
        ({"type": "message", "message": []}, "event field 'message' is a list"),
    ],
)
def test_events_of_the_wrong_shape_are_refused(event: dict[str, Any], problem: str) -> None:
    assert event_problem({"type": "event_callback", "event": event}) == problem
    assert event_problem(event_body("app_mention")) is None
    assert event_problem(slash_form(TEAM_ID)) is None


# through the Slack fake -----------------------------------------------------------------------


def ignored_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "ignoring a" in r.getMessage()]


async def test_a_signed_event_from_another_workspace_gets_no_model_call_and_no_post(
    bot: RunningBot,
    fake_slack: FakeSlack,
    fake_anthropic: FakeAnthropic,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    mention = from_team(event_body("app_mention", channel="C0THEIRS01"), OTHER_TEAM)
    dm = from_team(event_body("message_im", channel="D0THEIRS01", text="hi"), OTHER_TEAM)
    for body in (mention, dm):
        status, _ = await bot.send(body)
        assert status == 200  # acknowledged, so Slack does not retry it
    before = len(fake_anthropic.message_requests)
    await barrier(bot)
    assert len(fake_anthropic.message_requests) == before + 1  # the barrier's turn only
    assert not fake_slack.messages_in("C0THEIRS01") and not fake_slack.messages_in("D0THEIRS01")
    assert not [
        c for c in fake_slack.calls if c.args.get("channel") in ("C0THEIRS01", "D0THEIRS01")
    ]
    lines = ignored_lines(caplog)
    assert lines == [
        f"slack: ignoring a app_mention event for team {OTHER_TEAM} (installed in {TEAM_ID})",
        f"slack: ignoring a message event for team {OTHER_TEAM} (installed in {TEAM_ID})",
    ]
    assert not any("should we put features" in line for line in lines)  # no payload dump


async def test_a_slash_command_from_another_workspace_adds_no_todo(
    bot: RunningBot, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    theirs = slash_form(
        OTHER_TEAM,
        text="todo add Exfiltrate the roadmap",
        response_url=f"{fake_slack.url}/commands/{OTHER_TEAM}/1/x",
    )
    status, _ = await bot.command(theirs)
    assert status == 200
    mine = slash_form(TEAM_ID, text="todos", response_url=f"{fake_slack.url}/commands/T/2/ok")
    await bot.command(mine)
    [response] = await eventually(lambda: list(fake_slack.responses), what="our todos")
    assert response.method.startswith("/commands/T/2/")
    assert "Exfiltrate" not in str(response.args)
    assert ignored_lines(caplog) == [
        f"slack: ignoring a slash command for team {OTHER_TEAM} (installed in {TEAM_ID})"
    ]


async def test_a_slack_connect_mention_from_another_org_is_answered(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    body = shared_channel_mention()
    assert (await bot.send(body))[0] == 200
    [reply] = await answered(fake_slack, "C0SHARED01", body["event"]["ts"])
    assert reply.text.startswith("Fake answer to: U0EXTERN01:")


async def test_an_org_wide_install_answers_its_workspaces_and_ignores_other_orgs(
    tmp_path: Path, fake_anthropic: FakeAnthropic, fake_slack: FakeSlack
) -> None:
    fake_slack.team_id = OUR_ORG
    fake_slack.enterprise_id = OUR_ORG
    fake_slack.enterprise_install = True
    running = await RunningBot(
        slack_settings(tmp_path, fake_slack), slack_secrets(fake_anthropic), fake_slack
    ).start()
    try:
        theirs = org_install_mention("T0WORKSP09", "E0OTHER002")
        theirs["event"]["channel"] = "C0OTHERORG"
        assert (await running.send(theirs))[0] == 200
        ours = org_install_mention("T0WORKSP03", OUR_ORG)
        assert (await running.send(ours))[0] == 200
        await answered(fake_slack, "C0ORGWIDE1", ours["event"]["ts"])
        assert not fake_slack.messages_in("C0OTHERORG")
        assert len(fake_anthropic.message_requests) == 1
    finally:
        assert await running.stop() == 0
