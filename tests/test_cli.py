"""The CLI end to end, as a new user runs it: real processes, the fake model on loopback."""

from __future__ import annotations

import time
from pathlib import Path

from bot.signoff import SIGN_OFF
from tests.conftest import FAKE_KEY, run_cli
from tests.fakes.fake_anthropic import FakeAnthropic

QUESTION = "Our preprocessing service takes 4 hours for daily data. How do we speed it up?"


def model_env(fake: FakeAnthropic, tmp_path: Path) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": fake.url,  # type: ignore[attr-defined]
        "ANTHROPIC_API_KEY": FAKE_KEY,
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "archbot.db"),
    }


def all_texts(body: dict) -> str:
    return "\n".join(
        b.get("text", "") for m in body["messages"] for b in m["content"] if isinstance(b, dict)
    )


def test_piped_question_is_answered_and_remembered_per_thread(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    env = model_env(fake_anthropic, tmp_path)
    fake_anthropic.reply_text(
        "Profile it first: where do the 4 hours go?\n\nDone. What are we tackling next?"
    )
    first = run_cli(["chat", "--thread", "t1"], cwd=tmp_path, stdin=QUESTION, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(SIGN_OFF)
    assert first.stdout.count(SIGN_OFF) == 1
    assert "Profile it first" in first.stdout
    request = fake_anthropic.message_requests[0]
    assert "ML systems architect" in request.body["system"][0]["text"]
    assert {"list_todos", "add_todo", "update_todo"} <= {t["name"] for t in request.body["tools"]}
    assert (
        request.headers.get("Authorization") == f"Bearer {FAKE_KEY}"
        or request.headers.get("X-Api-Key") == FAKE_KEY
    )

    fake_anthropic.reply_text("Partition by day.")
    second = run_cli(["chat", "--thread", "t1"], cwd=tmp_path, stdin="And with Polars?", env=env)
    assert second.returncode == 0, second.stderr
    history = all_texts(fake_anthropic.message_requests[1].body)
    assert QUESTION in history and "Profile it first" in history and "And with Polars?" in history

    other = run_cli(["chat", "--thread", "t2"], cwd=tmp_path, stdin="Fresh topic", env=env)
    assert other.returncode == 0
    assert QUESTION not in all_texts(fake_anthropic.message_requests[2].body)


def test_tool_call_adds_a_todo_that_commands_list_without_the_model(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    env = model_env(fake_anthropic, tmp_path)
    fake_anthropic.reply_tool_use("add_todo", {"title": "Profile the preprocessing DAG"})
    fake_anthropic.reply_text("I added a todo for profiling.")
    out = run_cli(["chat", "--thread", "t1"], cwd=tmp_path, stdin=QUESTION, env=env)
    assert out.returncode == 0, out.stderr
    tool_result = fake_anthropic.message_requests[1].body["messages"][-1]["content"][0]
    assert tool_result["type"] == "tool_result" and "Added todo 1" in tool_result["content"]

    calls_before = len(fake_anthropic.message_requests)
    added = run_cli(["chat", "--thread", "t1"], cwd=tmp_path, stdin="!todo add Try Polars", env=env)
    listed = run_cli(["chat", "--thread", "t1"], cwd=tmp_path, stdin="!todos", env=env)
    assert "Added todo 2: Try Polars" in added.stdout
    assert "1. [ ] Profile the preprocessing DAG" in listed.stdout
    assert "2. [ ] Try Polars" in listed.stdout
    assert listed.stdout.strip().endswith(SIGN_OFF)
    assert len(fake_anthropic.message_requests) == calls_before


def test_without_a_key_the_reply_names_it_and_commands_work(tmp_path: Path) -> None:
    env = {"ARCHBOT_STORAGE__PATH": str(tmp_path / "archbot.db")}
    out = run_cli(["chat"], cwd=tmp_path, stdin=QUESTION, env=env)
    assert out.returncode == 0
    assert "ANTHROPIC_API_KEY" in out.stdout and out.stdout.strip().endswith(SIGN_OFF)
    assert out.stdout.count(SIGN_OFF) == 1
    todo = run_cli(["chat"], cwd=tmp_path, stdin="!todo add Pick a feature store", env=env)
    assert "Added todo 1" in todo.stdout
    unknown = run_cli(["chat"], cwd=tmp_path, stdin="!frobnicate", env=env)
    assert "Unknown command `!frobnicate`" in unknown.stdout and "!todos" in unknown.stdout


def test_overloaded_model_answers_clearly_within_a_minute(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    env = model_env(fake_anthropic, tmp_path)
    fake_anthropic.always_error = 529
    started = time.monotonic()
    out = run_cli(
        ["chat", "--thread", "busy"], cwd=tmp_path, stdin="Is ClickHouse right for ticks?", env=env
    )
    assert time.monotonic() - started < 60
    assert out.returncode == 0
    assert "overloaded" in out.stdout and "saved" in out.stdout
    assert out.stdout.strip().endswith(SIGN_OFF)
    assert "Traceback" not in out.stderr
    fake_anthropic.always_error = None
    run_cli(["chat", "--thread", "busy"], cwd=tmp_path, stdin="Still there?", env=env)
    assert "Is ClickHouse right for ticks?" in all_texts(fake_anthropic.message_requests[-1].body)


def test_bad_config_is_one_line_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "archbot.toml").write_text('[llm]\nmax_tool_rounds = "many"\n')
    out = run_cli(["chat"], cwd=tmp_path, stdin="hi")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "llm.max_tool_rounds" in out.stderr and "Traceback" not in out.stderr
    env_bad = run_cli(
        ["doctor"], cwd=tmp_path / "..", env={"ARCHBOT_SLACK__MODE": "carrier-pigeon"}
    )
    assert env_bad.returncode == 2 and "slack.mode" in env_bad.stderr


def test_secrets_never_reach_output_or_database(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    env = model_env(fake_anthropic, tmp_path)
    fake_anthropic.reply_error(401, "authentication_error", "invalid x-api-key")
    out = run_cli(["chat"], cwd=tmp_path, stdin="hello", env={**env, "ARCHBOT_LOG__LEVEL": "debug"})
    assert "401" in out.stdout
    assert FAKE_KEY not in out.stdout + out.stderr
    assert FAKE_KEY.encode() not in (tmp_path / "archbot.db").read_bytes()


def test_init_writes_the_example_once(tmp_path: Path) -> None:
    first = run_cli(["init"], cwd=tmp_path)
    assert first.returncode == 0 and (tmp_path / "archbot.toml").is_file()
    second = run_cli(["init"], cwd=tmp_path)
    assert second.returncode == 1 and "already exists" in second.stderr


def test_run_without_adapters_says_so(tmp_path: Path) -> None:
    out = run_cli(["run"], cwd=tmp_path)
    assert out.returncode == 2
    assert "no platform adapter is enabled" in out.stderr


def test_doctor_checks_config_database_and_model(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    ok = run_cli(["doctor"], cwd=tmp_path, env=model_env(fake_anthropic, tmp_path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok   config" in ok.stdout and "ok   database" in ok.stdout and "ok   model" in ok.stdout
    fake_anthropic.always_error = 401
    bad = run_cli(["doctor"], cwd=tmp_path, env=model_env(fake_anthropic, tmp_path))
    assert bad.returncode == 1 and "FAIL model" in bad.stdout
