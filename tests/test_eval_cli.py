"""`archbot eval` end to end, as a team runs it in CI: a real process, the fake model on loopback."""

from __future__ import annotations

import json
from pathlib import Path

from bot.feedback import record_vote
from bot.store import Store
from tests.conftest import FAKE_KEY, run_cli
from tests.eval_answers import PARROT, STRONG
from tests.fakes.fake_anthropic import FakeAnthropic


def model_env(fake: FakeAnthropic, tmp_path: Path) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": fake.url,  # type: ignore[attr-defined]
        "ANTHROPIC_API_KEY": FAKE_KEY,
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "archbot.db"),
    }


def test_a_strong_endpoint_outscores_a_parrot_and_min_score_gates_ci(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    env = model_env(fake_anthropic, tmp_path)
    fake_anthropic.default_text = STRONG
    strong = run_cli(["eval", "--out", "strong.json"], cwd=tmp_path, env=env)
    assert strong.returncode == 0, strong.stderr
    fake_anthropic.default_text = PARROT
    weak = run_cli(["eval", "--out", "weak.json", "--min-score", "0.9"], cwd=tmp_path, env=env)
    assert weak.returncode == 1, weak.stderr
    assert "below --min-score 0.9" in weak.stderr and "Traceback" not in weak.stderr

    good = json.loads((tmp_path / "strong.json").read_text())
    bad = json.loads((tmp_path / "weak.json").read_text())
    assert len(good["scenarios"]) >= 12 and len(bad["scenarios"]) >= 12
    assert good["mean_score"] > bad["mean_score"]
    assert good["mean_score"] >= 0.9 > bad["mean_score"]
    for row in good["scenarios"]:
        assert set(row) >= {"id", "score", "checks", "tokens", "cost_usd", "latency_ms"}
        assert 0 <= row["score"] <= 1 and row["error"] is None
        assert row["tokens"]["total"] > 0 and row["cost_usd"] > 0
        assert all(set(c) == {"name", "passed", "detail"} for c in row["checks"])
    for table in (strong.stdout, weak.stdout):
        assert "lookahead-bias-backtest" in table and "mean score" in table
    # Each user turn went to the model with the real consultant prompt and tools.
    requests = fake_anthropic.message_requests
    turns = sum(len(json.loads(p.read_text())["turns"]) for p in builtin_files())
    assert len(requests) == 2 * turns
    assert all("ML systems architect" in r.body["system"][0]["text"] for r in requests)
    assert all(
        {"read_file", "search_code"} <= {t["name"] for t in r.body["tools"]} for r in requests
    )


def builtin_files() -> list[Path]:
    from bot.evals import scenarios

    return sorted((Path(scenarios.__file__).parent / "scenarios").glob("*.json"))


def test_baseline_shows_the_change_per_scenario(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    env = model_env(fake_anthropic, tmp_path)
    fake_anthropic.default_text = PARROT
    first = run_cli(["eval", "--out", "before.json"], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    fake_anthropic.default_text = STRONG
    second = run_cli(
        ["eval", "--baseline", "before.json", "--out", "after.json"], cwd=tmp_path, env=env
    )
    assert second.returncode == 0, second.stderr
    after = json.loads((tmp_path / "after.json").read_text())
    before = {
        r["id"]: r["score"] for r in json.loads((tmp_path / "before.json").read_text())["scenarios"]
    }
    for row in after["scenarios"]:
        assert row["baseline_score"] == before[row["id"]]
        assert row["change"] == round(row["score"] - before[row["id"]], 4) and row["change"] > 0
    change = next(r["change"] for r in after["scenarios"] if r["id"] == "drift-monitoring")
    line = next(x for x in second.stdout.splitlines() if x.startswith("drift-monitoring"))
    assert f" {change:+.2f}" in line
    assert "against the baseline" in second.stdout


def test_team_scenarios_are_added_and_a_bad_file_is_one_line(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    env = model_env(fake_anthropic, tmp_path)
    fake_anthropic.default_text = STRONG
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "gpu.json").write_text(
        json.dumps(
            {
                "id": "team-gpu-budget",
                "title": "Do we need GPUs?",
                "turns": ["Do we need GPUs to train gradient-boosted trees on 2 GB of features?"],
                "checks": {"pitfalls": [["measure first", "profile"]]},
            }
        )
    )
    out = run_cli(["eval", "--scenarios", str(ours), "--out", "r.json"], cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    ids = [r["id"] for r in json.loads((tmp_path / "r.json").read_text())["scenarios"]]
    assert "team-gpu-budget" in ids and len(ids) >= 13
    calls = len(fake_anthropic.message_requests)

    (ours / "broken.json").write_text(json.dumps({"id": "x", "title": "t", "turns": "one"}))
    bad = run_cli(["eval", "--scenarios", str(ours)], cwd=tmp_path, env=env)
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.json" in lines[0] and "turns" in lines[0]
    assert len(fake_anthropic.message_requests) == calls  # refused before any model call


def test_without_a_model_eval_says_so_in_one_line(tmp_path: Path) -> None:
    out = run_cli(["eval"], cwd=tmp_path, env={"ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db")})
    assert out.returncode == 1
    assert "needs a model" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_thumbs_down_answers_become_draft_scenarios(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    env = model_env(fake_anthropic, tmp_path)
    fake_anthropic.reply_text("Use Cassandra for ticks.")
    fake_anthropic.reply_text("Just shard it by symbol.")
    for text in ("Where should five years of ticks live?", "And at 10x the volume?"):
        done = run_cli(["chat", "--thread", "ticks"], cwd=tmp_path, stdin=text, env=env)
        assert done.returncode == 0, done.stderr
    store = Store.open(tmp_path / "archbot.db")
    try:
        first, second = (r[0] for r in store.conn.execute("SELECT id FROM turns ORDER BY id"))
        record_vote(store, second, "U1", "down")
        record_vote(store, second, "U2", "down")
        record_vote(store, first, "U1", "down")
        record_vote(store, first, "U1", "up")  # changed their mind: the latest click wins
    finally:
        store.close()

    out = run_cli(["eval", "--from-feedback", "drafts"], cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    files = sorted((tmp_path / "drafts").glob("*.json"))
    assert [f.name for f in files] == [f"feedback-{second}.json"]
    draft = json.loads(files[0].read_text())
    assert draft["turns"] == ["And at 10x the volume?"] and draft["draft"] is True
    assert draft["context"][0]["text"] == "Where should five years of ticks live?"
    assert any("Use Cassandra" in c["text"] and c.get("is_bot") for c in draft["context"])
    assert "Just shard it by symbol." in draft["notes"] and "U1, U2" in draft["notes"]

    files[0].write_text(
        files[0].read_text().replace('"pitfalls": []', '"pitfalls": [["hot partition"]]')
    )
    again = run_cli(["eval", "--from-feedback", "drafts"], cwd=tmp_path, env=env)
    assert again.returncode == 0 and "already there" in again.stdout
    assert "hot partition" in files[0].read_text()  # an edited draft is never overwritten

    fake_anthropic.default_text = STRONG
    run = run_cli(["eval", "--scenarios", "drafts", "--out", "r.json"], cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert f"feedback-{second}" in run.stdout
