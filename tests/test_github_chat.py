"""Acceptance through `archbot chat` (a real subprocess): scripted model, loopback GitHub."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chat_helpers import chat, tool_result
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_github import FakeGitHub, trading_repo

SIGN_OFF = "Done. What are we tackling next?"


@dataclass
class Fakes:
    model: FakeAnthropic
    model_url: str
    github: FakeGitHub
    env: dict[str, str]


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    model = FakeAnthropic()
    github = trading_repo(FakeGitHub())
    trading_repo(github, "evil/elsewhere")
    model_server = ServerThread(model.app()).start()
    github_server = ServerThread(github.app()).start()
    env = {
        "GITHUB_TOKEN": "ghp-test-not-real",
        "ARCHBOT_GITHUB__API_URL": github_server.url,
        "ARCHBOT_GITHUB__DEFAULT_REPO": "acme/trading",
    }
    try:
        yield Fakes(model, model_server.url, github, env)
    finally:
        model_server.stop()
        github_server.stop()


def test_repository_tools_through_archbot_chat(tmp_path: Path, fakes: Fakes) -> None:
    m = fakes.model
    m.reply_tool_use("search_code", {"query": "FeatureStore"})
    m.reply_tool_use("read_file", {"path": "src/trading/features/store.py"})
    m.reply_tool_use("find_usages", {"symbol": "FeatureStore"})
    m.reply_tool_use("recent_changes", {"days": 7})
    m.reply_tool_use("search_code", {"query": "secrets", "repo": "evil/elsewhere"})
    m.reply_text("The feature store lives in src/trading/features/store.py.")

    done = chat(
        "Where is our feature store?", cwd=tmp_path, anthropic_url=fakes.model_url, env=fakes.env
    )

    assert done.returncode == 0, done.stderr
    assert "The feature store lives in src/trading/features/store.py." in done.stdout
    assert SIGN_OFF in done.stdout
    requests = m.message_requests
    assert len(requests) == 6
    tools = {t["name"] for t in requests[0].body["tools"]}
    assert {"search_code", "find_usages", "read_file", "recent_changes", "fetch_url"} <= tools

    # search_code: scoped query, paths and links back
    assert (
        fakes.github.requests_to("/search/code")[0].query["q"] == "FeatureStore repo:acme/trading"
    )
    text, is_error = tool_result(requests[1])
    assert not is_error
    assert "src/trading/features/store.py" in text and "src/trading/serving/online.py" in text

    # read_file: the file's text with line numbers
    text, is_error = tool_result(requests[2])
    assert not is_error
    assert "8| class FeatureStore:" in text
    assert "https://github.com/acme/trading/blob/main/src/trading/features/store.py" in text

    # find_usages: the importing file
    text, is_error = tool_result(requests[3])
    assert not is_error
    assert "src/trading/serving/online.py [imports" in text

    # recent_changes: the PR merged two days ago
    text, is_error = tool_result(requests[4])
    assert not is_error
    assert "#42 Add FeatureStore online read path" in text
    assert "https://github.com/acme/trading/pull/42" in text

    # a repo outside the allowlist: refused, nothing sent
    text, is_error = tool_result(requests[5])
    assert is_error
    assert "evil/elsewhere is not allowed" in text
    assert not [
        r for r in fakes.github.requests if "evil" in r.path or "evil" in r.query.get("q", "")
    ]


def test_second_read_in_a_new_process_is_conditional_and_served_from_cache(
    tmp_path: Path, fakes: Fakes
) -> None:
    path = "src/trading/features/store.py"
    for _ in range(2):
        fakes.model.reply_tool_use("read_file", {"path": path})
        fakes.model.reply_text("Read it.")
        done = chat(
            "Show me the store.", cwd=tmp_path, anthropic_url=fakes.model_url, env=fakes.env
        )
        assert done.returncode == 0, done.stderr

    reads = fakes.github.requests_to(f"/repos/acme/trading/contents/{path}")
    assert len(reads) == 2
    assert "If-None-Match" not in reads[0].headers
    assert reads[1].headers["If-None-Match"].startswith('"')
    assert fakes.github.not_modified == 1
    first, _ = tool_result(fakes.model.message_requests[1])
    second, is_error = tool_result(fakes.model.message_requests[3])
    assert not is_error
    assert second == first and "8| class FeatureStore:" in second


def test_rate_limited_github_gives_a_tool_error_and_the_turn_completes(
    tmp_path: Path, fakes: Fakes
) -> None:
    fakes.github.rate_limited = "primary"
    fakes.model.reply_tool_use("search_code", {"query": "FeatureStore"})
    fakes.model.reply_text("GitHub is rate-limiting me; from memory: ...")

    done = chat(
        "Where is our feature store?", cwd=tmp_path, anthropic_url=fakes.model_url, env=fakes.env
    )

    assert done.returncode == 0, done.stderr
    assert "GitHub is rate-limiting me" in done.stdout and SIGN_OFF in done.stdout
    text, is_error = tool_result(fakes.model.message_requests[1])
    assert is_error
    assert "GitHub rate limit reached (primary limit)" in text
    assert "ghp-test-not-real" not in done.stdout + done.stderr + text


# Each form a hostile repository file or web page could talk the model into (issue 8).
ESCAPES: list[tuple[str, dict[str, str]]] = [
    ("dot-dot segments", {"path": "../../../other-org/x/contents/y"}),
    ("encoded dot-dot", {"path": "%2e%2e/%2e%2e/%2e%2e/other-org/x/contents/y"}),
    ("encoded slash", {"path": "..%2f..%2f..%2fother-org%2fx%2fcontents%2fy"}),
    ("double-encoded dot-dot", {"path": "%252e%252e/%252e%252e/%252e%252e/other-org/x"}),
    ("backslashes", {"path": "..\\..\\..\\other-org\\x\\contents\\y"}),
    ("ref with dot-dot", {"path": "README.md", "ref": "../../../other-org/x"}),
    ("query string", {"path": "README.md?ref=../../../other-org/x"}),
    ("fragment", {"path": "README.md#../../other-org"}),
    ("repo with a path tail", {"path": "README.md", "repo": "acme/trading/../../other/x"}),
    ("absolute path", {"path": "/orgs/other-org/members"}),
]


def test_read_file_cannot_leave_the_repository_through_archbot_chat(
    tmp_path: Path, fakes: Fakes
) -> None:
    for _, tool_input in ESCAPES:
        fakes.model.reply_tool_use("read_file", tool_input)
    fakes.model.reply_tool_use("read_file", {"path": "README.md"})  # the sandbox still reads
    fakes.model.reply_text("Only the repository's own files.")

    done = chat(
        "Read the other org's members.",
        cwd=tmp_path,
        anthropic_url=fakes.model_url,
        env={**fakes.env, "ARCHBOT_LLM__MAX_TOOL_ROUNDS": str(len(ESCAPES) + 2)},
    )

    assert done.returncode == 0, done.stderr
    assert "Only the repository's own files." in done.stdout
    requests = fakes.model.message_requests
    assert len(requests) == len(ESCAPES) + 2
    answered = {form: tool_result(r) for (form, _), r in zip(ESCAPES, requests[1:], strict=False)}
    not_refused = {
        form: text
        for form, (text, is_error) in answered.items()
        if not is_error or "No request was sent" not in text
    }
    assert not_refused == {}
    text, is_error = tool_result(requests[-1])
    assert not is_error and "Ingestion, features, models and execution." in text
    # Nothing was sent for any hostile form: the one request is the final, honest read.
    assert [r.raw_path for r in fakes.github.requests] == ["/repos/acme/trading/contents/README.md"]
    assert fakes.github.requests_outside("/repos/acme/trading/") == []
