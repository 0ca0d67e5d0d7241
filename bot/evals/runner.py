"""Runs scenarios through the real consultant core, one temporary database each.

Every scenario gets a core from `bot.app.build_core` (the prompt, the tools and the
tool loop production uses), its own SQLite file, and a GitHub client whose transport
serves the scenario's fixture repository, so no scenario reads a real repository or
another scenario's memory. Scenarios run concurrently within `[llm] max_concurrency`.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bot.app import Core, build_core
from bot.errors import ArchbotError
from bot.evals.checks import CheckResult, run_checks
from bot.evals.fixture_repo import FixtureTransport
from bot.evals.judge import judge
from bot.evals.scenarios import Scenario
from bot.events import ContextMessage, IncomingMessage
from bot.github import GitHubClient
from bot.settings import Secrets, Settings

log = logging.getLogger(__name__)

EVAL_USER = "eval"
ANSWER_LIMIT = 20_000  # characters of each answer kept in the report


@dataclass
class ScenarioResult:
    """What one scenario scored, and what it cost."""

    id: str
    title: str
    checks: list[CheckResult] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    judge_tokens: int = 0
    judge_cost_usd: float = 0.0
    latency_ms: int = 0
    error: str | None = None
    draft: bool = False

    @property
    def score(self) -> float:
        """Share of checks passed, 0..1; 0 when the scenario could not be answered."""
        if self.error is not None or not self.checks:
            return 0.0
        return sum(c.passed for c in self.checks) / len(self.checks)

    @property
    def tokens(self) -> int:
        """Every token the consultant used for this scenario, cached ones included."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


@dataclass
class SuiteResult:
    """A whole run: its scenarios in the order given."""

    model: str
    judge_model: str | None
    scenarios: list[ScenarioResult]
    wall_s: float

    @property
    def mean_score(self) -> float:
        """The mean of the scenario scores (0 for an empty run)."""
        if not self.scenarios:
            return 0.0
        return sum(s.score for s in self.scenarios) / len(self.scenarios)


def scenario_settings(
    settings: Settings, db_path: Path, scenario: Scenario, model: str
) -> Settings:
    """The run's settings for one scenario: its own database, model and fixture repository."""
    github = settings.github.model_copy(
        update={"default_repo": scenario.repo.name if scenario.repo else "", "allowed_repos": []}
    )
    return settings.model_copy(
        update={
            "storage": settings.storage.model_copy(update={"path": str(db_path)}),
            "llm": settings.llm.model_copy(update={"model": model}),
            "github": github,
        }
    )


def _context(scenario: Scenario) -> tuple[ContextMessage, ...]:
    return tuple(ContextMessage(c.user, c.text, c.is_bot) for c in scenario.context)


async def _use_fixture(core: Core, scenario: Scenario) -> None:
    """Swap the core's GitHub client for one that serves the fixture (or nothing)."""
    if core.services.github is not None:
        await core.services.github.aclose()
    core.services.github = GitHubClient(
        core.settings.github,
        None,
        core.store,
        transport=FixtureTransport(scenario.repo, core.settings.github.api_url),
    )


async def run_scenario(
    scenario: Scenario,
    settings: Settings,
    secrets: Secrets,
    *,
    model: str,
    judge_model: str | None = None,
) -> ScenarioResult:
    """Hold the scenario's conversation with a fresh core and score its answers."""
    result = ScenarioResult(scenario.id, scenario.title, draft=scenario.draft)
    with tempfile.TemporaryDirectory(prefix="archbot-eval-") as tmp:
        core = build_core(
            scenario_settings(settings, Path(tmp) / "eval.db", scenario, model), secrets
        )
        try:
            await _use_fixture(core, scenario)
            await _converse(core, scenario, result)
            if result.error is None:
                result.checks = run_checks(scenario, result.answers)
                if judge_model:
                    grades, call = await judge(core.model, judge_model, scenario, result.answers)
                    result.checks.extend(grades)
                    if call is not None:
                        usage = call.usage
                        result.judge_tokens = (
                            usage.input_tokens
                            + usage.output_tokens
                            + usage.cache_read_tokens
                            + usage.cache_write_tokens
                        )
                        result.judge_cost_usd = usage.cost_usd
        except ArchbotError as exc:
            result.error = str(exc)
        except Exception as exc:  # one broken scenario must not sink the suite
            log.exception("scenario %s failed", scenario.id)
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            await core.aclose()
    return result


async def _converse(core: Core, scenario: Scenario, result: ScenarioResult) -> None:
    """Send the scenario's turns in order, keeping each answer, its usage and latency."""
    started = time.perf_counter()
    for number, text in enumerate(scenario.turns):
        msg = IncomingMessage(
            platform="console",  # the local operator: [access] lists do not apply
            workspace="eval",
            channel="eval",
            thread=scenario.id,
            user=EVAL_USER,
            text=text,
            event_id=f"eval-{scenario.id}-{number}",
            prior_context=_context(scenario) if number == 0 else (),
            mentioned=True,
        )
        reply = await core.consultant.handle(msg)
        if reply is None:
            result.error = f"turn {number + 1} was not answered"
            break
        result.answers.append(reply.text[:ANSWER_LIMIT])
        if reply.kind == "error":
            result.error = f"turn {number + 1}: " + reply.text.split("\n", 1)[0][:300]
            break
    result.latency_ms = int((time.perf_counter() - started) * 1000)
    thread = core.store.get_thread(msg.thread_key)
    if thread is not None:
        usage = core.store.usage_for_thread(thread.id)
        result.input_tokens = usage.input_tokens
        result.output_tokens = usage.output_tokens
        result.cache_read_tokens = usage.cache_read_tokens
        result.cache_write_tokens = usage.cache_write_tokens
        result.cost_usd = usage.cost_usd


async def run_suite(
    scenarios: list[Scenario],
    settings: Settings,
    secrets: Secrets,
    *,
    model: str | None = None,
    judge_model: str | None = None,
    progress: TextIO | None = None,
) -> SuiteResult:
    """Run every scenario, at most `[llm] max_concurrency` at once; results in input order.

    `progress`, when given (a terminal), gets one line rewritten as scenarios finish.
    """
    if not secrets.model_configured:
        raise ArchbotError(
            "archbot eval needs a model: set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL for a "
            "gateway or local server)"
        )
    chosen = model or settings.llm.model
    limit = asyncio.Semaphore(settings.llm.max_concurrency)
    done = 0
    started = time.perf_counter()

    async def one(scenario: Scenario) -> ScenarioResult:
        nonlocal done
        async with limit:
            outcome = await run_scenario(
                scenario, settings, secrets, model=chosen, judge_model=judge_model
            )
        done += 1
        if progress is not None:
            width = 24
            filled = width * done // len(scenarios)
            progress.write(
                f"\r\x1b[K[{'#' * filled}{'.' * (width - filled)}] {done}/{len(scenarios)} "
                f"{scenario.id[:40]} {outcome.score:.2f}"
            )
            progress.flush()
        return outcome

    results = await asyncio.gather(*(one(s) for s in scenarios))
    if progress is not None:
        progress.write("\r\x1b[K")
        progress.flush()
    return SuiteResult(chosen, judge_model, list(results), time.perf_counter() - started)
