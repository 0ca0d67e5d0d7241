"""`archbot adr export DIR` end to end: records written by `!adr` in `archbot chat`, exported."""

from __future__ import annotations

from pathlib import Path

from tests.chat_helpers import chat
from tests.conftest import run_cli
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_decisions import STORAGE_DECISION


def test_export_writes_the_adr_tools_layout_and_never_overwrites_an_edit(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    url = fake_anthropic.url  # type: ignore[attr-defined]
    env = {"ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db")}
    empty = run_cli(["adr", "export", "docs/adr"], cwd=tmp_path, env=env)
    assert empty.returncode == 0 and "no decision records" in empty.stdout
    fake_anthropic.reply_text("Parquet on S3: cheapest at 2 TB a month.")
    assert chat("Where do we store ticks? Parquet on S3 it is.", cwd=tmp_path, anthropic_url=url)
    fake_anthropic.reply_tool_use("record_decision", STORAGE_DECISION)
    posted = chat("!adr", cwd=tmp_path, anthropic_url=url)
    assert posted.returncode == 0, posted.stderr
    name = "0001-store-ticks-as-parquet-on-s3-partitioned-by-day.md"
    assert f"Attached: {name}" in posted.stdout

    done = run_cli(["adr", "export", "docs/adr"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "docs" / "adr" / name
    assert f"wrote docs/adr/{name}" in done.stdout
    text = path.read_text()
    assert text.startswith("# 1. Store ticks as Parquet on S3, partitioned by day")
    assert text in posted.stdout  # the file holds what the thread was shown

    path.write_text(text.replace("Accepted", "Superseded by 0002"))
    again = run_cli(["adr", "export", "docs/adr"], cwd=tmp_path, env=env)
    assert again.returncode == 0
    assert f"skipped docs/adr/{name}: edited since the last export" in again.stdout
    assert "Superseded by 0002" in path.read_text()
    path.unlink()  # a deleted file is written again
    assert "wrote" in run_cli(["adr", "export", "docs/adr"], cwd=tmp_path, env=env).stdout
    assert path.read_text() == text
