"""The eval runner in process: the real core's tool loop reads a scenario's fixture repository
through the GitHub transport seam, and the judge's grades come back through its tool schema."""

from __future__ import annotations

import io
import json
from pathlib import Path

from bot.evals.judge import DEFAULT_CRITERIA, GRADE_TOOL
from bot.evals.runner import run_suite
from bot.evals.scenarios import Scenario, builtin_scenarios
from bot.signoff import SIGN_OFF
from tests.conftest import make_secrets, make_settings
from tests.eval_answers import STRONG
from tests.fakes.fake_anthropic import FakeAnthropic


def tool_results(body: dict) -> list[dict]:
    return [
        b
        for b in body["messages"][-1]["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]


async def test_the_repo_tools_read_the_scenarios_fixture_with_no_github(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    scenario = next(s for s in builtin_scenarios() if s.id == "repo-feature-parity")
    fake_anthropic.reply_tool_use("search_code", {"query": "close_ma"})
    fake_anthropic.reply_tool_use("read_file", {"path": "src/quant/serving/predict.py"})
    fake_anthropic.reply_tool_use("read_file", {"path": "src/quant/serving/missing.py"})
    fake_anthropic.reply_text(STRONG)
    suite = await run_suite(
        [scenario], make_settings(tmp_path), make_secrets(fake_anthropic), model="eval-model"
    )
    requests = fake_anthropic.message_requests
    assert len(requests) == 4 and {r.body["model"] for r in requests} == {"eval-model"}
    searched, read, missing = (tool_results(r.body)[0] for r in requests[1:])
    assert not searched.get("is_error"), searched
    assert "src/quant/features/pipeline.py" in searched["content"]
    assert "https://github.com/acme/quant-platform/blob/main/" in searched["content"]
    assert not read.get("is_error") and "closes[-21:-1]" in read["content"]
    assert "untrusted_content" in read["content"]
    assert missing.get("is_error") and "missing.py" in missing["content"]
    (result,) = suite.scenarios
    assert result.error is None and result.score == 1.0
    cited = next(c for c in result.checks if c.name == "cited_paths")
    assert cited.passed and "3 fixture path(s)" in cited.detail
    assert result.tokens > 0 and result.latency_ms >= 0
    assert not (tmp_path / "archbot.db").exists()  # each scenario has its own temporary database


async def test_a_scenario_without_a_fixture_reaches_no_repository(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    scenario = next(s for s in builtin_scenarios() if s.id == "drift-monitoring")
    fake_anthropic.reply_tool_use("read_file", {"path": "README.md", "repo": "acme/trading"})
    fake_anthropic.reply_text(STRONG)
    settings = make_settings(tmp_path, github={"default_repo": "acme/trading"})
    await run_suite([scenario], settings, make_secrets(fake_anthropic))
    (refused,) = tool_results(fake_anthropic.message_requests[1].body)
    assert refused.get("is_error") and "not allowed" in refused["content"]


JUDGED = Scenario.model_validate(
    {
        "id": "judged",
        "title": "Judged",
        "context": [{"user": "alice", "text": "We settled on TimescaleDB last week."}],
        "turns": ["Should ticks go to TimescaleDB or ClickHouse?"],
        "judge": ["It asks about the query patterns."],
    }
)


async def test_the_judge_fills_its_schema_and_each_criterion_is_a_check(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    count = len(DEFAULT_CRITERIA) + 1
    fake_anthropic.reply_text(STRONG)
    fake_anthropic.reply_tool_use(
        GRADE_TOOL,
        {
            "grades": [
                {"criterion": n, "passed": n != count, "reason": f"reason {n}"}
                for n in range(1, count + 1)
            ]
        },
    )
    suite = await run_suite(
        [JUDGED], make_settings(tmp_path), make_secrets(fake_anthropic), judge_model="judge-1"
    )
    answer, graded = fake_anthropic.message_requests
    assert "We settled on TimescaleDB last week." in json.dumps(answer.body["messages"])
    assert graded.body["model"] == "judge-1"
    assert graded.body["tool_choice"] == {"type": "tool", "name": GRADE_TOOL}
    assert [t["name"] for t in graded.body["tools"]] == [GRADE_TOOL]
    prompt = graded.body["messages"][0]["content"][0]["text"]
    assert "<untrusted_content" in prompt and "It asks about the query patterns." in prompt
    assert SIGN_OFF in prompt  # the answer as users saw it
    (result,) = suite.scenarios
    judged = [c for c in result.checks if c.name.startswith("judge ")]
    assert [c.passed for c in judged] == [True] * (count - 1) + [False]
    assert judged[-1].detail == f"reason {count}"
    assert 0 < result.score < 1 and result.judge_tokens > 0


async def test_a_judge_that_ignores_the_schema_fails_every_criterion(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text(STRONG)
    fake_anthropic.reply_text("Looks great to me, 10/10.")
    suite = await run_suite(
        [JUDGED], make_settings(tmp_path), make_secrets(fake_anthropic), judge_model="judge-1"
    )
    judged = [c for c in suite.scenarios[0].checks if c.name.startswith("judge ")]
    assert judged and not any(c.passed for c in judged)
    assert all("did not call record_grades" in c.detail for c in judged)


async def test_a_model_failure_scores_zero_with_the_reason(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_error(400, "invalid_request_error", "model: unknown model 'nope'")
    progress = io.StringIO()
    suite = await run_suite(
        [JUDGED], make_settings(tmp_path), make_secrets(fake_anthropic), progress=progress
    )
    assert "1/1 judged 0.00" in progress.getvalue()  # the terminal's progress line
    (result,) = suite.scenarios
    assert result.score == 0.0 and result.error and "unknown model 'nope'" in result.error
