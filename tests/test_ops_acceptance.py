"""Issue 15 acceptance, tried as an operator would: with `archbot run` answering in the loopback
Slack, `archbot backup b.db` copies the live database (the thread just discussed included) and
/metrics on ARCHBOT_METRICS__PORT shows the turn-latency histogram with a count."""

from __future__ import annotations

import re
import sqlite3
import urllib.request
from pathlib import Path

from tests.conftest import free_port, run_cli
from tests.fakes.fake_slack import event_body
from tests.slack_run import SlackRun, serving_model, serving_slack
from tests.test_slack_acceptance import replies

CHANNEL = "C0BACKUP"


def test_backup_and_metrics_while_archbot_runs(tmp_path: Path) -> None:
    metrics_port = free_port()
    with serving_model() as model, serving_slack() as slack:
        bot = SlackRun(tmp_path, slack, model, ARCHBOT_METRICS__PORT=str(metrics_port))
        try:
            model.reply_text("Partition the feature store by entity and day.")
            body = event_body(
                "app_mention", channel=CHANNEL, text="<@U0BOT0001> how do we shard features?"
            )
            assert bot.send(body)[0] == 200
            root = str(body["event"]["ts"])
            replies(slack, CHANNEL, root)
            done = run_cli(
                ["backup", "b.db"],
                cwd=tmp_path,
                env={"ARCHBOT_STORAGE__PATH": str(bot.db)},
            )
            assert done.returncode == 0, done.stderr
            assert re.search(r"wrote b\.db: [\d,]+ bytes", done.stdout), done.stdout
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                metrics = response.read().decode()
        finally:
            bot.stop_cleanly()
    count = re.search(r"^archbot_turn_latency_seconds_count (\S+)$", metrics, re.M)
    assert count is not None and float(count.group(1)) >= 1, metrics
    copy = sqlite3.connect(tmp_path / "b.db")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = [row[0] for row in copy.execute("SELECT key FROM threads")]
        texts = " ".join(str(row[0]) for row in copy.execute("SELECT content FROM messages"))
    finally:
        copy.close()
    assert any(root in key for key in keys), keys
    assert "how do we shard features?" in texts and "Partition the feature store" in texts
