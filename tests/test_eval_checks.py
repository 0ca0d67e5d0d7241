"""The eval rubric and scenario files, at their seam: pure functions over answer text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.evals.checks import (
    check_alternatives,
    check_cited_paths,
    check_clarifying_question,
    check_no_mass_pings,
    check_pitfall,
    check_sign_off_once,
    check_tradeoffs,
    run_checks,
)
from bot.evals.scenarios import ScenarioError, builtin_scenarios, load_path, select
from bot.signoff import SIGN_OFF, sign_off
from tests.eval_answers import PARROT, STRONG

SPEC_11_GROUND = {
    "latency": "latency-budget-live-inference",
    "polars": "polars-vs-pandas-resampling",
    "skew": "online-offline-feature-skew",
    "look-ahead": "lookahead-bias-backtest",
    "canary": "model-rollback-canary",
    "kafka": "kafka-vs-redis-streams",
    "drift": "drift-monitoring",
    "secrets": "secrets-handling",
    "over-engineered": "over-engineered-proposal",
    "vague": "vague-data-pipeline",
    "kill switch": "kill-switch-live-trading",
    "repository": "repo-feature-parity",
}


def score(results: list) -> float:
    return sum(r.passed for r in results) / len(results)


def test_at_least_twelve_builtin_scenarios_cover_spec_11() -> None:
    scenarios = {s.id: s for s in builtin_scenarios()}
    assert len(scenarios) >= 12
    assert set(SPEC_11_GROUND.values()) <= set(scenarios)
    assert scenarios["vague-data-pipeline"].checks.clarifying_question
    repo = scenarios["repo-feature-parity"]
    assert repo.repo is not None and repo.checks.min_cited_paths >= 1
    assert any(len(s.turns) > 1 for s in scenarios.values())
    assert all(s.checks.pitfalls for s in scenarios.values())


@pytest.mark.parametrize("scenario", builtin_scenarios(), ids=lambda s: s.id)
def test_a_strong_answer_outscores_a_parrot_on_every_scenario(scenario) -> None:
    strong = run_checks(scenario, [sign_off(STRONG)] * len(scenario.turns))
    parrot = run_checks(scenario, [sign_off(PARROT)] * len(scenario.turns))
    assert score(strong) > score(parrot)
    assert score(parrot) < 0.5
    assert [r.name for r in strong] == [r.name for r in parrot]


def test_alternatives_and_tradeoffs_need_more_than_one_prescription() -> None:
    one_way = sign_off("Use Kafka. It is the industry standard and it will scale for you.")
    assert not check_alternatives(one_way).passed
    assert not check_tradeoffs(one_way).passed
    two_ways = sign_off(
        "- Option A: Kafka, replay for days but the operational burden of a cluster.\n"
        "- Option B: Redis Streams, simpler; however retention costs memory."
    )
    assert check_alternatives(two_ways).passed
    assert check_tradeoffs(two_ways).passed


def test_the_sign_off_alone_is_not_a_clarifying_question() -> None:
    assert not check_clarifying_question(sign_off("Here is the pipeline: Airflow and S3.")).passed
    assert not check_clarifying_question(
        sign_off("See https://example.com/faq?x=1 for more.")
    ).passed
    assert check_clarifying_question(sign_off("How many GB a day do you ingest?")).passed


def test_pitfall_phrasings_match_across_hyphens_and_case() -> None:
    group = ["look ahead", "lookahead"]
    assert check_pitfall("Beware LOOK-AHEAD bias in the fills.", group).passed
    assert check_pitfall("that is lookahead", group).passed
    assert not check_pitfall("the backtest looks fine, ship it", group).passed


def test_cited_paths_must_exist_in_the_fixture() -> None:
    files = {"src/quant/serving/predict.py", "src/quant/features/pipeline.py", "README.md"}
    real = "See `src/quant/serving/predict.py:12` and https://github.com/acme/quant-platform/blob/main/src/quant/features/pipeline.py#L9."
    assert check_cited_paths(real, files, 2).passed
    assert not check_cited_paths(real, files, 3).passed  # too few
    invented = real + " Also src/quant/serving/cache.py is wrong."
    result = check_cited_paths(invented, files, 2)
    assert not result.passed and "src/quant/serving/cache.py" in result.detail
    assert check_cited_paths("the `README.md` says so", files, 1).passed


def test_mass_pings_and_a_doubled_sign_off_fail() -> None:
    for ping in ("<!channel> heads up", "<!here|here> now", "@everyone look", "<!subteam^S1> hi"):
        assert not check_no_mass_pings(ping).passed, ping
    assert check_no_mass_pings("email ops@here.example or ask @alice").passed
    assert not check_sign_off_once(f"{SIGN_OFF}\n\nmore\n\n{SIGN_OFF}").passed
    assert not check_sign_off_once("no sign-off at all").passed
    assert check_sign_off_once(sign_off("fine")).passed


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_a_teams_scenarios_load_from_a_file_or_a_folder(tmp_path: Path) -> None:
    one = {"id": "team-gpu", "title": "GPU budget", "turns": ["Do we need GPUs for XGBoost?"]}
    write(tmp_path / "a.json", one)
    (tmp_path / "b.toml").write_text(
        'id = "team-toml"\ntitle = "From TOML"\nturns = ["Parquet or CSV?"]\n'
        '[checks]\npitfalls = [["parquet"]]\n'
    )
    (tmp_path / "notes.txt").write_text("ignored")
    loaded = load_path(tmp_path)
    assert [s.id for s in loaded] == ["team-gpu", "team-toml"]
    assert loaded[1].checks.pitfalls == [["parquet"]]
    assert [s.id for s in load_path(tmp_path / "a.json")] == ["team-gpu"]
    with pytest.raises(ScenarioError, match="used twice"):
        select(builtin_scenarios(), [*loaded, loaded[0]])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ({"id": "x", "title": "t", "turns": []}, "turns"),
        ({"id": "Bad Id", "title": "t", "turns": ["q"]}, "id"),
        ({"id": "x", "title": "t", "turns": ["q"], "colour": 1}, "colour"),
        (
            {"id": "x", "title": "t", "turns": ["q"], "checks": {"min_cited_paths": 1}},
            "fixture repo",
        ),
        (
            {
                "id": "x",
                "title": "t",
                "turns": ["q"],
                "repo": {"name": "a/b", "files": {"../x": ""}},
            },
            "repo",
        ),
    ],
)
def test_a_bad_scenario_file_is_refused_in_one_line(
    tmp_path: Path, content: object, expected: str
) -> None:
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(ScenarioError) as caught:
        load_path(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and expected in message


def test_a_hostile_answer_is_scanned_in_linear_time() -> None:
    import time

    scenario = next(s for s in builtin_scenarios() if s.id == "repo-feature-parity")
    nasty = sign_off(
        ("a" * 100_000) + " " + ("a/" * 20_000) + " `" + ("b." * 20_000) + " " + ("x?" * 10_000)
    )
    started = time.perf_counter()
    results = run_checks(scenario, [nasty])
    assert time.perf_counter() - started < 2.0
    assert not next(r for r in results if r.name == "length").passed
